//! The two load models. Closed loop (ghz's `-c`, perf_analyzer's concurrency mode): N workers,
//! each sending its next request when the previous one returns, so the offered load adapts to
//! the server. Open loop (perf_analyzer's request-rate mode, wrk2): requests go out on a fixed
//! timetable whatever the server does, and latency counts from the scheduled send time, so a
//! stalled server shows up as latency instead of silently lowering the load (coordinated
//! omission). Both first run `--warmup` of uncounted load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::args::{Load, Stop};
use crate::cpu::{self, CpuUse};
use crate::grpc::GrpcClient;
use crate::grpc_v2::GrpcV2Client;
use crate::rest::RestClient;
use crate::stats::{Failure, Recorder};

pub(crate) enum Client {
    Grpc(GrpcClient),
    GrpcV2(GrpcV2Client),
    Rest(RestClient),
}

impl Client {
    /// One request (payload and channel chosen by `seq`), failing with `timeout` after `limit`.
    async fn call(&self, seq: u64, limit: Duration) -> Result<(), Failure> {
        let call = async {
            match self {
                Client::Grpc(c) => c.call(seq).await,
                Client::GrpcV2(c) => c.call(seq).await,
                Client::Rest(c) => c.call(seq).await,
            }
        };
        tokio::time::timeout(limit, call)
            .await
            .unwrap_or_else(|_| Err(Failure::new("timeout", &format!("no response within {limit:?}"))))
    }
}

pub(crate) struct Plan {
    pub load: Load,
    pub stop: Stop,
    pub warmup: Duration,
    pub timeout: Duration,
    pub server_pid: Option<u32>,
}

pub(crate) struct RunResult {
    pub recorder: Recorder,
    /// From the end of warm-up to the last counted completion.
    pub elapsed: Duration,
    pub server_cpu: Option<Result<CpuUse, String>>,
    pub client_cpu: Option<CpuUse>,
}

pub(crate) async fn run(client: Arc<Client>, plan: Plan) -> RunResult {
    let ticks = cpu::ticks_per_second();
    let start = Instant::now();
    let measure_start = start + plan.warmup;
    let pid = plan.server_pid;
    let first = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        sample(pid, ticks)
    });
    let recorder = match plan.load {
        Load::Closed { concurrency } => closed(client, &plan, concurrency, measure_start).await,
        Load::Open { rate, max_outstanding } => open(client, &plan, rate, max_outstanding, start, measure_start).await,
    };
    let last = sample(pid, ticks);
    let first = first.await.unwrap_or_else(|e| (Instant::now(), Some(Err(e.to_string())), None));
    let elapsed = recorder.last_done.map_or(Duration::ZERO, |t| t.saturating_duration_since(measure_start));
    let wall = last.0.saturating_duration_since(first.0);
    let diff = |a: Duration, b: Duration| CpuUse { cpu: b.saturating_sub(a), wall };
    let server_cpu = match (first.1, last.1) {
        (Some(Ok(a)), Some(Ok(b))) => Some(Ok(diff(a, b))),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e)),
        _ => None,
    };
    let client_cpu = first.2.zip(last.2).map(|(a, b)| diff(a, b));
    RunResult { recorder, elapsed, server_cpu, client_cpu }
}

type Sample = (Instant, Option<Result<Duration, String>>, Option<Duration>);

fn sample(pid: Option<u32>, ticks: u64) -> Sample {
    let server = pid.map(|p| cpu::process_cpu(&p.to_string(), ticks));
    (Instant::now(), server, cpu::process_cpu("self", ticks).ok())
}

async fn closed(client: Arc<Client>, plan: &Plan, concurrency: usize, measure_start: Instant) -> Recorder {
    let end = match plan.stop {
        Stop::After(d) => Some(measure_start + d),
        Stop::Requests(_) => None,
    };
    let quota = match plan.stop {
        Stop::Requests(n) => n,
        Stop::After(_) => u64::MAX,
    };
    let seq = Arc::new(AtomicU64::new(0));
    let counted = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, seq, counted, timeout) = (client.clone(), seq.clone(), counted.clone(), plan.timeout);
            tokio::spawn(async move {
                let mut recorder = Recorder::default();
                loop {
                    let sent = Instant::now();
                    let measured = sent >= measure_start;
                    if measured && (end.is_some_and(|e| sent >= e) || counted.fetch_add(1, Ordering::Relaxed) >= quota) {
                        break;
                    }
                    let outcome = client.call(seq.fetch_add(1, Ordering::Relaxed), timeout).await;
                    let done = Instant::now();
                    if measured {
                        recorder.record(outcome, done - sent, done);
                    }
                }
                recorder
            })
        })
        .collect();
    let mut total = Recorder::default();
    for worker in workers {
        if let Ok(r) = worker.await {
            total.merge(r);
        }
    }
    total
}

async fn open(client: Arc<Client>, plan: &Plan, rate: f64, max_outstanding: usize, start: Instant, measure_start: Instant) -> Recorder {
    let shared = Arc::new(Mutex::new(Recorder::default()));
    let outstanding = Arc::new(AtomicUsize::new(0));
    let (mut dropped, mut slots) = (0u64, 0u64);
    let mut i: u64 = 0;
    loop {
        // Each slot is placed from `start`, not from the previous one, so timer lateness never
        // accumulates; a late wake-up sends every overdue slot at once, each keeping its own
        // scheduled time.
        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
        let measured = scheduled >= measure_start;
        if measured {
            let done = match plan.stop {
                Stop::After(d) => scheduled >= measure_start + d,
                Stop::Requests(n) => slots >= n,
            };
            if done {
                break;
            }
            slots += 1;
        }
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let seq = i;
        i += 1;
        if outstanding.load(Ordering::Relaxed) >= max_outstanding {
            dropped += u64::from(measured);
            continue;
        }
        outstanding.fetch_add(1, Ordering::Relaxed);
        let (client, shared, outstanding, timeout) = (client.clone(), shared.clone(), outstanding.clone(), plan.timeout);
        tokio::spawn(async move {
            let outcome = client.call(seq, timeout).await;
            let done = Instant::now();
            if measured && let Ok(mut r) = shared.lock() {
                r.record(outcome, done.saturating_duration_since(scheduled), done);
            }
            outstanding.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // Every request ends within the timeout, so this terminates.
    while outstanding.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut recorder = shared.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
    recorder.dropped = dropped;
    recorder
}
