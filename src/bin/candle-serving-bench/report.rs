//! The run's summary, as a table for people or one JSON object for scripts
//! (`benches/server_bench.sh`). Throughput counts successful requests only (goodput), so a
//! server that fails fast does not look fast; items/s multiplies by the batch size.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::args::{Args, Load, Protocol, Stop};
use crate::cpu::CpuUse;
use crate::load::RunResult;

pub(crate) struct Context<'a> {
    pub args: &'a Args,
    /// The signature the inputs were shaped by (None when the server's default was not looked up).
    pub signature: Option<String>,
    pub batch: usize,
}

pub(crate) fn json(ctx: &Context<'_>, run: &mut RunResult) -> Value {
    let a = ctx.args;
    let r = &mut run.recorder;
    let latency = r.latency();
    let secs = run.elapsed.as_secs_f64();
    let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let sent = r.sent();
    let (mode, concurrency, rate, max_outstanding) = match a.load {
        Load::Closed { concurrency } => ("closed", Some(concurrency), None, None),
        Load::Open { rate, max_outstanding } => ("open", None, Some(rate), Some(max_outstanding)),
    };
    let (duration_s, requests) = match a.stop {
        Stop::After(d) => (Some(d.as_secs_f64()), None),
        Stop::Requests(n) => (None, Some(n)),
    };
    let cpu = |u: Option<CpuUse>| {
        u.map(|u| {
            json!({
                "cpu_s": round(u.cpu.as_secs_f64(), 3),
                "wall_s": round(u.wall.as_secs_f64(), 3),
                "cores": round(ratio(u.cpu, u.wall), 3),
                "us_per_request": if sent > 0 { Value::from(round(u.cpu.as_secs_f64() * 1e6 / sent as f64, 1)) } else { Value::Null },
            })
        })
    };
    let server_cpu = match &run.server_cpu {
        None => Value::Null,
        Some(Ok(u)) => cpu(Some(*u)).unwrap_or_default(),
        Some(Err(e)) => json!({ "error": e }),
    };
    json!({
        "target": a.target,
        "protocol": match a.protocol { Protocol::Grpc => "grpc", Protocol::GrpcV2 => "grpc-v2", Protocol::Rest => "rest" },
        "model": a.model,
        "signature": ctx.signature,
        "mode": mode,
        "concurrency": concurrency,
        "rate": rate,
        "max_outstanding": max_outstanding,
        "connections": a.connections,
        "batch": ctx.batch,
        "warmup_s": a.warmup.as_secs_f64(),
        "duration_s": duration_s,
        "requests": requests,
        "sent": sent,
        "succeeded": r.succeeded(),
        "failed": r.failed,
        "dropped": r.dropped,
        "elapsed_s": round(secs, 3),
        "requests_per_s": round(per_s(r.succeeded()), 1),
        "items_per_s": round(per_s(r.succeeded() * ctx.batch as u64), 1),
        "latency_ms": latency.map(|l| json!({
            "p50": round(l.p50, 3), "p90": round(l.p90, 3), "p99": round(l.p99, 3), "max": round(l.max, 3), "mean": round(l.mean, 3),
        })),
        "errors": r.errors.iter().map(|(k, g)| json!({ "key": k, "count": g.count, "example": g.example })).collect::<Vec<_>>(),
        "server_pid": a.server_pid,
        "server_cpu": server_cpu,
        "client_cpu": cpu(run.client_cpu),
    })
}

/// The same numbers as [`json`], laid out for a terminal.
pub(crate) fn table(v: &Value) -> String {
    let mut o = String::new();
    let s = |k: &str| v[k].as_str().map(str::to_string).unwrap_or_else(|| v[k].to_string());
    let load = match v["mode"].as_str() {
        Some("open") => format!("open loop, {} req/s scheduled, max {} outstanding", s("rate"), s("max_outstanding")),
        _ => format!("closed loop, concurrency {}", s("concurrency")),
    };
    let stop = match v["requests"].as_u64() {
        Some(n) => format!("{n} requests"),
        None => format!("{}s", s("duration_s")),
    };
    let signature = v["signature"].as_str().unwrap_or("(server default)");
    let _ = writeln!(o, "target       {} ({}), model {}, signature {}", s("target"), s("protocol"), s("model"), signature);
    let _ = writeln!(o, "load         {load}, {} connection(s), batch {}, {stop} after {}s warm-up", s("connections"), s("batch"), s("warmup_s"));
    let _ = writeln!(o, "requests     sent {}, succeeded {}, failed {}, dropped {}", s("sent"), s("succeeded"), s("failed"), s("dropped"));
    let _ = writeln!(o, "throughput   {} req/s, {} items/s over {}s", s("requests_per_s"), s("items_per_s"), s("elapsed_s"));
    let l = &v["latency_ms"];
    if l.is_null() {
        let _ = writeln!(o, "latency      (no successful requests)");
    } else {
        let _ = writeln!(o, "latency (ms) p50 {}  p90 {}  p99 {}  max {}  mean {}", l["p50"], l["p90"], l["p99"], l["max"], l["mean"]);
    }
    for (label, key) in [("server CPU", "server_cpu"), ("client CPU", "client_cpu")] {
        let c = &v[key];
        if let Some(e) = c["error"].as_str() {
            let _ = writeln!(o, "{label:<12} unavailable: {e}");
        } else if !c.is_null() {
            let _ = writeln!(o, "{label:<12} {} us/request ({}s CPU over {}s, {} cores)", c["us_per_request"], c["cpu_s"], c["wall_s"], c["cores"]);
        }
    }
    if let Some(errors) = v["errors"].as_array().filter(|e| !e.is_empty()) {
        let _ = writeln!(o, "errors");
        for e in errors {
            let _ = writeln!(o, "  {:<20} {:>8}  e.g. {}", s_of(&e["key"]), e["count"], s_of(&e["example"]));
        }
    }
    o
}

fn s_of(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() { 0.0 } else { a.as_secs_f64() / b.as_secs_f64() }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
