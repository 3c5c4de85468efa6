//! `gpu-cnn infer`: read digits from pictures.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

use gpu_cnn::checkpoint;
use gpu_cnn::preprocess::{self, Digit};

use super::{Backend, Gemm};

#[derive(clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG, BMP, GIF, TIFF, WebP) or directories of them
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Weights to use (a gpu-cnn or PyTorch safetensors checkpoint); the bundled ones by default
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Model spec, for a weights file without gpu-cnn metadata
    #[arg(long)]
    arch: Option<String>,
    /// Machine-readable output: one JSON object per image
    #[arg(long)]
    json: bool,
    /// Write the 28x28 inputs the network saw to this directory
    #[arg(long)]
    save_preprocessed: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
}

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"];

fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("{}: no image files in this directory", p.display());
            }
            out.extend(files);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(out)
}

pub fn run(a: Args, gemm: Gemm) -> Result<()> {
    let files = expand(&a.images)?;
    let mut digits: Vec<Digit> = Vec::with_capacity(files.len());
    for f in &files {
        let img = preprocess::load_image(f)?;
        digits.push(preprocess::prepare(&img).with_context(|| f.display().to_string())?);
    }
    if let Some(dir) = &a.save_preprocessed {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (f, d) in files.iter().zip(&digits) {
            let stem = f.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "image".into());
            preprocess::save_png(d, &dir.join(format!("{stem}.28x28.png")))?;
        }
    }
    let weights = super::weights_or_default(a.weights)?;
    let ck = checkpoint::load(&weights, &super::model_from(a.arch.as_deref())?)?;
    let classes = ck.model.classes();
    let mut net = super::inference(a.backend, gemm, ck.model, &ck.params, digits.len().min(1024))?;
    let flat: Vec<f32> = digits.iter().flatten().copied().collect();
    let probs = net.predict(&flat)?;
    for (f, row) in files.iter().zip(probs.chunks(classes)) {
        let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
        ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
        report(f, &ranked[..3.min(classes)], a.json);
    }
    Ok(())
}

fn report(f: &Path, top: &[(usize, f32)], json: bool) {
    if json {
        let top3: Vec<serde_json::Value> =
            top.iter().map(|&(d, p)| serde_json::json!({"digit": d, "probability": p})).collect();
        println!("{}", serde_json::json!({"file": f.display().to_string(), "digit": top[0].0, "top3": top3}));
    } else {
        let rest: Vec<String> = top.iter().map(|&(d, p)| format!("{d} {:.1}%", 100.0 * p)).collect();
        println!("{}: {}  ({})", f.display(), top[0].0, rest.join(", "));
    }
}
