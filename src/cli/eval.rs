//! `gpu-cnn eval`: test-set accuracy, loss, per-class accuracy and confusion matrix.

use anyhow::{Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

use gpu_cnn::data::{Dataset, Split};
use gpu_cnn::gpu::warmup::Asked;
use gpu_cnn::plot;
use gpu_cnn::train::evaluate;

use super::{DeviceArgs, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// A directory with MNIST-format IDX files (its t10k-* test split is used)
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 1000, value_parser = gpu_cnn::data::parse_batch_size)]
    batch_size: usize,
    /// Also draw the confusion matrix to this PNG file
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Machine-readable output: one JSON object with the same figures
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let (backend, gemm) = a.device.resolve()?;
    if let Some(p) = &a.plot {
        plot::picture_format(p).context("--plot")?;
    }
    let (weights, ck) = a.model.load()?;
    let test = Dataset::load(&super::data_dir(a.data), Split::Test)?;
    test.check_against(&ck.model)?;
    let k = ck.model.classes();
    let batch = a.batch_size.min(test.len());
    let mut net = super::inference(backend, gemm, ck.model, &ck.params, batch, Asked::Evaluations)?;
    let ev = evaluate(net.as_mut(), &test, batch)?;
    let mut m = vec![vec![0u64; k]; k];
    for (&p, &t) in ev.predictions.iter().zip(&test.labels) {
        m[t as usize][p as usize] += 1;
    }
    if a.json {
        let per_class: Vec<serde_json::Value> = m
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let n: u64 = row.iter().sum();
                // A class absent from the test set has no accuracy, not 0%.
                let acc = (n > 0).then(|| row[c] as f64 / n as f64);
                json!({"class": c, "images": n, "correct": row[c], "accuracy": acc})
            })
            .collect();
        let j = json!({
            "weights": weights.display().to_string(),
            "backend": net.describe(),
            "images": test.len(),
            "accuracy": ev.accuracy,
            "loss": ev.loss,
            "per_class": per_class,
            "confusion": m,
        });
        outln!("{}", serde_json::to_string_pretty(&j)?)?;
    } else {
        report(&weights, test.len(), &net.describe(), ev.accuracy, ev.loss, &m)?;
    }
    if let Some(p) = &a.plot {
        plot::confusion(&m, p)?;
        if !a.json {
            outln!("\nwrote {}", p.display())?;
        }
    }
    Ok(())
}

/// The human-readable report.
fn report(weights: &Path, images: usize, backend: &str, accuracy: f64, loss: f64, m: &[Vec<u64>]) -> Result<()> {
    outln!("{} on {images} test images ({backend})", weights.display())?;
    outln!("accuracy {:.2}%  loss {:.4}", 100.0 * accuracy, loss)?;
    outln!("\nper class:")?;
    for (c, row) in m.iter().enumerate() {
        let n: u64 = row.iter().sum();
        if n > 0 {
            outln!("  {c}: {:6.2}% of {n}", 100.0 * row[c] as f64 / n as f64)?;
        }
    }
    outln!("\nconfusion matrix (rows: true class, columns: predicted):")?;
    out!("     ")?;
    for c in 0..m.len() {
        out!("{c:>6}")?;
    }
    outln!()?;
    for (t, row) in m.iter().enumerate() {
        out!("  {t:>2} ")?;
        for n in row {
            out!("{n:>6}")?;
        }
        outln!()?;
    }
    Ok(())
}
