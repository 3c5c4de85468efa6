//! `gpu-cnn eval`: test-set accuracy, loss, per-class accuracy and confusion matrix.

use anyhow::Result;
use std::path::PathBuf;

use gpu_cnn::checkpoint;
use gpu_cnn::data::{Dataset, Split};
use gpu_cnn::executor::Optimizer;
use gpu_cnn::plot;
use gpu_cnn::train::evaluate;

use super::Backend;

#[derive(clap::Args)]
pub struct Args {
    /// Weights to evaluate; the bundled ones by default
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Model spec, for a weights file without gpu-cnn metadata
    #[arg(long)]
    arch: Option<String>,
    /// A directory with MNIST-format IDX files (its t10k-* test split is used)
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 1000, value_parser = gpu_cnn::data::parse_batch_size)]
    batch_size: usize,
    /// Also draw the confusion matrix to this PNG file
    #[arg(long)]
    plot: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
}

pub fn run(a: Args) -> Result<()> {
    let weights = super::weights_or_default(a.weights)?;
    let ck = checkpoint::load(&weights, &super::model_from(a.arch.as_deref())?)?;
    let test = Dataset::load(&super::data_dir(a.data), Split::Test)?;
    test.check_against(&ck.model)?;
    let k = ck.model.classes();
    let batch = a.batch_size.min(test.len());
    let mut exec = super::executor(a.backend, ck.model, Optimizer::sgd(0.0, 0.0), &ck.params, batch)?;
    let ev = evaluate(exec.as_mut(), &test, batch)?;
    let mut m = vec![vec![0u64; k]; k];
    for (&p, &t) in ev.predictions.iter().zip(&test.labels) {
        m[t as usize][p] += 1;
    }
    println!("{} on {} test images ({})", weights.display(), test.len(), exec.describe());
    println!("accuracy {:.2}%  loss {:.4}", 100.0 * ev.accuracy, ev.loss);
    println!("\nper class:");
    for (c, row) in m.iter().enumerate() {
        let n: u64 = row.iter().sum();
        if n > 0 {
            println!("  {c}: {:6.2}% of {n}", 100.0 * row[c] as f64 / n as f64);
        }
    }
    println!("\nconfusion matrix (rows: true class, columns: predicted):");
    print!("     ");
    for c in 0..k {
        print!("{c:>6}");
    }
    println!();
    for (t, row) in m.iter().enumerate() {
        print!("  {t:>2} ");
        for n in row {
            print!("{n:>6}");
        }
        println!();
    }
    if let Some(p) = &a.plot {
        plot::confusion(&m, p)?;
        println!("\nwrote {}", p.display());
    }
    Ok(())
}
