//! `gpu-cnn serve`: draw a digit in the browser and watch the network think. The
//! server itself is `gpu_cnn::serve`; this file turns the arguments into its
//! executors and configuration.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gpu_cnn::model::Model;
use gpu_cnn::serve::{self, BatchConfig, Batcher, Config};

use super::{DeviceArgs, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on. The default answers this machine only; 0.0.0.0:PORT
    /// exposes the server to every network the machine is on
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// A training run directory (`train --out`): /run draws its metrics.jsonl as it grows
    #[arg(long)]
    run: Option<PathBuf>,
    /// The most pictures run in one GPU submission
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_batch: u32,
    /// How long a prediction waits for others to share its batch, in milliseconds
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedI64ValueParser::<u64>::new().range(0..=1000))]
    batch_wait_ms: u64,
}

pub fn run(a: Args) -> Result<()> {
    let (backend, gemm) = a.device.resolve()?;
    let (weights, ck) = a.model.load_for_pictures()?;
    if let Some(dir) = &a.run {
        // A directory that does not exist yet is fine: `train --out` may create it later.
        if dir.exists() && !dir.is_dir() {
            bail!("--run {}: not a directory", dir.display());
        }
    }
    let listener = std::net::TcpListener::bind(a.addr).with_context(|| format!("cannot listen on {}", a.addr))?;
    let addr = listener.local_addr().with_context(|| format!("cannot listen on {}", a.addr))?;
    let mut info = model_info(&ck.model);
    let (model, params, max_batch) = (ck.model.clone(), ck.params, a.max_batch as usize);
    let batch = BatchConfig { max_batch, wait: Duration::from_millis(a.batch_wait_ms), ..Default::default() };
    let batcher = Batcher::start(
        batch,
        Box::new(move || super::inference_and_explainer(backend, gemm, model.clone(), &params, max_batch)),
    )?;
    info["backend"] = batcher.describe.clone().into();
    info["weights"] = weights.display().to_string().into();
    outln!("serving {} on {}", weights.display(), batcher.describe)?;
    if !addr.ip().is_loopback() {
        outln!("warning: {addr} is reachable from other machines; anyone who can reach it can use the server")?;
    }
    outln!("listening on http://{addr}/  (Ctrl-C stops it)")?;
    let mut config = Config::new(ck.model, info);
    config.run_dir = a.run;
    serve::run(listener, batcher, config, serve::stop_signal())?;
    outln!("stopped")?;
    Ok(())
}

/// The `summary` table as JSON: the same figures per layer, and the table itself.
fn model_info(model: &Model) -> serde_json::Value {
    let layers: Vec<serde_json::Value> = model
        .layers
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "layer": l.layer.to_string(),
                "output": l.output.to_string(),
                "params": l.num_params(),
                "mflops": l.flops_per_sample() as f64 / 1e6,
            })
        })
        .collect();
    json!({
        "input": model.input.to_string(),
        "layers": layers,
        "params": model.num_params,
        "mflops": model.flops_per_sample() as f64 / 1e6,
        "classes": model.classes(),
        "table": super::summary::table(model),
    })
}
