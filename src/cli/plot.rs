//! `gpu-cnn plot`: several runs' loss and accuracy on shared axes, and a table of
//! where each ended.

use anyhow::{bail, Context, Result};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

use gpu_cnn::metrics_log::MetricsLog;
use gpu_cnn::plot::{self, Run};

#[derive(clap::Args)]
pub struct Args {
    /// Run directories, as `gpu-cnn train --out` writes them (each with a metrics.jsonl)
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// The picture to write (PNG)
    #[arg(short, long, default_value = "compare.png")]
    out: PathBuf,
}

/// How a run is named: the directory as given, or its real name for "." and "..".
fn run_name(dir: &Path) -> String {
    let given = dir.display().to_string();
    let trimmed = given.trim_end_matches('/');
    match dir.file_name() {
        Some(_) => trimmed.to_string(),
        None => dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or(given),
    }
}

/// The model spec that `gpu-cnn train` stores in its weights' metadata; None (with a
/// warning when a file is there but unreadable) if the run has no weights to tell.
fn run_arch(dir: &Path) -> Option<String> {
    for name in ["model.safetensors", "checkpoint.safetensors"] {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let bytes = gpu_cnn::files::read_file(&path, gpu_cnn::checkpoint::MAX_FILE_BYTES);
        let spec = bytes.map_err(|e| format!("{e:#}")).and_then(|bytes| {
            let (_, header) =
                SafeTensors::read_metadata(&bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
            Ok(header.metadata().as_ref().and_then(|m| m.get("gpu_cnn.arch").cloned()))
        });
        match spec {
            Ok(Some(spec)) => return Some(spec),
            Ok(None) => {}
            Err(e) => errln!("warning: {}: {e}; the run is named by its directory only", path.display()),
        }
    }
    None
}

/// One row of the text table.
struct Summary {
    name: String,
    arch: String,
    steps: u64,
    last_loss: Option<f64>,
    best_test: Option<f64>,
}

fn print_table(rows: &[Summary]) -> Result<()> {
    let dash = || "-".to_string();
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.arch.clone(),
                r.steps.to_string(),
                r.last_loss.map_or_else(dash, |l| format!("{l:.4}")),
                r.best_test.map_or_else(dash, |a| format!("{:.2}%", 100.0 * a)),
            ]
        })
        .collect();
    let head = ["run", "arch", "steps", "last train loss", "best test accuracy"];
    let width = |i: usize| cells.iter().map(|c| c[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..5).map(width).collect();
    for row in std::iter::once(head.map(String::from)).chain(cells) {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            // Names left-aligned, figures right-aligned.
            .map(|(i, c)| if i < 2 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect();
        outln!("{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    plot::picture_format(&a.out).context("-o")?;
    let mut runs = Vec::new();
    let mut rows = Vec::new();
    for dir in &a.runs {
        if !dir.exists() {
            bail!("{}: no such run directory", dir.display());
        }
        if !dir.is_dir() {
            bail!("{}: not a directory; give the directory that `gpu-cnn train --out` wrote", dir.display());
        }
        let metrics = dir.join("metrics.jsonl");
        if !metrics.is_file() {
            bail!("{}: no such file; is {} a run directory of `gpu-cnn train`?", metrics.display(), dir.display());
        }
        let log = MetricsLog::read(&metrics)?;
        for w in &log.warnings {
            errln!("warning: {w}");
        }
        let (train, test) = log.curves();
        if train.is_empty() && test.is_empty() {
            errln!("warning: {}: no metrics in it yet; the run is left out", metrics.display());
            continue;
        }
        let name = run_name(dir);
        let arch = run_arch(dir);
        let steps = train.iter().chain(&test).map(|p| p.0).max().unwrap_or(0);
        rows.push(Summary {
            name: name.clone(),
            arch: arch.clone().unwrap_or_else(|| "-".into()),
            steps,
            last_loss: train.last().map(|p| p.1),
            best_test: test.iter().map(|p| p.2).reduce(f64::max),
        });
        let label = match arch {
            Some(arch) => format!("{name}  ({arch})"),
            None => name,
        };
        runs.push(Run { label, train, test });
    }
    if runs.is_empty() {
        let files: Vec<String> = a.runs.iter().map(|d| d.join("metrics.jsonl").display().to_string()).collect();
        bail!("nothing to draw: no metrics in {}", files.join(", "));
    }
    print_table(&rows)?;
    plot::comparison(&runs, &a.out)?;
    outln!("wrote {}", a.out.display())?;
    Ok(())
}
