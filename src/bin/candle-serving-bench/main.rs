//! candle-serving-bench: a load generator for TensorFlow Serving-compatible Predict endpoints
//! (gRPC or REST), in the spirit of ghz and Triton's perf_analyzer. It exists to measure this
//! server's throughput, tail latency and CPU cost per request with the same client against every
//! configuration (batching on or off, CPU or GPU), and works against TF Serving itself too.
//!
//! Flow: parse flags -> shape the inputs (a `.npy` file, or random tensors shaped by the model's
//! signature from the server's metadata) -> pre-encode the requests -> warm up -> measure ->
//! report. See `--help` for the flags.

mod args;
mod cpu;
mod grpc;
mod grpc_v2;
mod http;
mod inputs;
mod load;
mod metadata;
mod npy;
mod report;
mod rest;
mod stats;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use args::{Args, Parsed, Protocol};
use inputs::{InputSpec, Payload};
use load::{Client, Plan};

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("candle-serving-bench: {message}");
            return ExitCode::from(2);
        }
    };
    // Read the .npy before connecting: a bad file is a bad flag (exit 2), not a server problem.
    let npy = match args.input_npy.as_deref().map(npy::read).transpose() {
        Ok(npy) => npy,
        Err(message) => {
            eprintln!("candle-serving-bench: --input-npy {message}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("candle-serving-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (client, ctx_signature, batch) = match setup(&args, npy).await {
            Ok(ready) => ready,
            Err(message) => {
                eprintln!("candle-serving-bench: {message}");
                return ExitCode::FAILURE;
            }
        };
        let plan = Plan { load: args.load, stop: args.stop, warmup: args.warmup, timeout: args.timeout, server_pid: args.server_pid };
        let mut run = load::run(Arc::new(client), plan).await;
        let ctx = report::Context { args: &args, signature: ctx_signature, batch };
        let summary = report::json(&ctx, &mut run);
        // Not println!: a closed pipe (`| head`) is the reader's choice, not a reason to panic.
        let text = if args.json { format!("{summary}\n") } else { report::table(&summary) };
        let _ = std::io::stdout().write_all(text.as_bytes());
        ExitCode::SUCCESS
    })
}

/// Connects, works out the inputs and pre-encodes the requests. Returns the client, the
/// signature the inputs follow (for the report) and the batch size.
async fn setup(args: &Args, npy: Option<npy::NpyF32>) -> Result<(Client, Option<String>, usize), String> {
    let channels = match args.protocol {
        Protocol::Grpc | Protocol::GrpcV2 => Some(grpc::connect(&args.target, args.connections).await?),
        Protocol::Rest => None,
    };
    // The metadata is needed for random inputs, and to name the input a .npy feeds unless
    // --input-name says it.
    let described = if npy.is_some() && args.input_name.is_some() {
        None
    } else {
        let found = match &channels {
            Some(channels) => metadata::grpc_inputs(&grpc::stub(channels[0].clone()), &args.model, args.signature.as_deref()).await?,
            None => metadata::rest_inputs(&args.target, &args.model, args.signature.as_deref()).await?,
        };
        Some(found)
    };
    let payloads: Vec<Payload> = match (&npy, &described) {
        (Some(npy), _) => {
            let name = match (&args.input_name, &described) {
                (Some(name), _) => name.clone(),
                (None, Some((_, specs))) => only_input(specs)?,
                (None, None) => return Err("no input name: pass --input-name".into()),
            };
            inputs::from_npy(npy, &name, args.batch)
        }
        (None, Some((_, specs))) => vec![inputs::random(specs, args.batch.unwrap_or(1), args.dynamic_dim)?],
        (None, None) => return Err("no inputs: pass --input-npy".into()),
    };
    let batch = payloads.first().map_or(1, |p| p.batch);
    // Send the signature name only when asked, or when the model's only signature is not the
    // server's default one (which the request would otherwise get).
    let found_signature = described.map(|(name, _)| name);
    let send_signature = args.signature.clone().or_else(|| found_signature.clone().filter(|n| n != metadata::DEFAULT_SIGNATURE));
    let client = match (args.protocol, channels) {
        (Protocol::GrpcV2, Some(channels)) => {
            if let Some(signature) = &send_signature {
                return Err(format!("--protocol=grpc-v2 runs the default signature; {signature} cannot be chosen"));
            }
            Client::GrpcV2(grpc_v2::GrpcV2Client::new(channels, &args.model, &payloads, args.timeout))
        }
        (_, Some(channels)) => {
            let stubs = channels.into_iter().map(grpc::stub).collect();
            Client::Grpc(grpc::GrpcClient::new(stubs, &args.model, send_signature.as_deref(), &payloads, args.timeout))
        }
        (_, None) => Client::Rest(rest::RestClient::new(&args.target, &args.model, send_signature.as_deref(), &payloads)),
    };
    Ok((client, args.signature.clone().or(found_signature), batch))
}

/// The name of the signature's single input; a `.npy` supplies one tensor.
fn only_input(specs: &[InputSpec]) -> Result<String, String> {
    match specs {
        [only] => Ok(only.name.clone()),
        _ => Err(format!(
            "the signature has inputs {}; --input-npy feeds one, name it with --input-name",
            specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}
