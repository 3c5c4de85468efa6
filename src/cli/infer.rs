//! `gpu-cnn infer`: read digits from pictures.

use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};

use gpu_cnn::files;
use gpu_cnn::gpu::warmup::Asked;
use gpu_cnn::preprocess::{self, Digit};

use super::pictures;
use super::{DeviceArgs, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG, BMP, GIF, TIFF, WebP) or directories of them
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Machine-readable output: one JSON object per image
    #[arg(long)]
    json: bool,
    /// Write the 28x28 inputs the network saw to this directory
    #[arg(long)]
    save_preprocessed: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Read every picture; one that cannot be read is reported on stderr and the rest are
/// still read. Exits non-zero at the end if any input failed.
pub fn run(a: Args) -> Result<()> {
    let (backend, gemm) = a.device.resolve()?;
    let (candidates, errors) = pictures::expand(&a.images);
    let stems = pictures::stems(&candidates);
    if let Some(dir) = &a.save_preprocessed {
        let outputs: Vec<PathBuf> = stems.iter().map(|stem| saved_as(dir, stem)).collect();
        let inputs: Vec<&Path> = candidates.iter().chain(&a.model.weights).map(PathBuf::as_path).collect();
        pictures::refuse_overwriting_inputs(&inputs, &outputs, "--save-preprocessed")?;
    }
    let mut failed = errors.len();
    for e in &errors {
        errln!("error: {e:#}");
    }
    let mut files = Vec::with_capacity(candidates.len());
    let mut digits: Vec<Digit> = Vec::with_capacity(candidates.len());
    for (f, stem) in candidates.into_iter().zip(stems) {
        match preprocess::load_digit(&f) {
            Ok(d) => {
                files.push((f, stem));
                digits.push(d);
            }
            Err(e) => {
                errln!("error: {e:#}");
                failed += 1;
            }
        }
    }
    let all_failed = || anyhow!("{failed} of {} inputs could not be read", failed + files.len());
    if digits.is_empty() {
        return Err(all_failed());
    }
    if let Some(dir) = &a.save_preprocessed {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for ((_, stem), d) in files.iter().zip(&digits) {
            save_preprocessed(d, &saved_as(dir, stem))?;
        }
    }
    let (_, ck) = a.model.load_for_pictures()?;
    let classes = ck.model.classes();
    let mut net = super::inference(backend, gemm, ck.model, &ck.params, digits.len().min(1024), Asked::Predictions)?;
    let flat: Vec<f32> = digits.iter().flatten().copied().collect();
    let probs = net.predict(&flat)?;
    for ((f, _), row) in files.iter().zip(probs.chunks(classes)) {
        let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
        ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
        report(f, &ranked[..3.min(classes)], a.json)?;
    }
    if failed > 0 {
        return Err(all_failed());
    }
    Ok(())
}

/// Where `--save-preprocessed` puts the input made from the picture of `stem`.
fn saved_as(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.28x28.png"))
}

/// What the network saw, as an 8-bit grayscale PNG encoded in memory and written
/// atomically. Not `preprocess::save_png`: image's `save` drops the error of its last
/// flush, so a full disk left a 0-byte picture and exit 0.
fn save_preprocessed(digit: &Digit, path: &Path) -> Result<()> {
    let img =
        image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(digit[(y * 28 + x) as usize] * 255.0).round() as u8]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).with_context(|| format!("{}: cannot encode", path.display()))?;
    files::write_atomic(path, png.get_ref())
}

/// A file name for JSON: `file` is always a string (lossy where the name is not
/// UTF-8); such a name also gets its exact form, `file_bytes` (its bytes, on Unix) or
/// `file_utf16` (its UTF-16 units, on Windows), so a script can still open it.
fn file_json(f: &Path) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("file".into(), f.to_string_lossy().into());
    if f.to_str().is_none() {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            m.insert("file_bytes".into(), f.as_os_str().as_bytes().into());
        }
        #[cfg(windows)]
        {
            use std::os::windows::ffi::OsStrExt;
            m.insert("file_utf16".into(), f.as_os_str().encode_wide().collect::<Vec<u16>>().into());
        }
    }
    m
}

fn report(f: &Path, top: &[(usize, f32)], json: bool) -> Result<()> {
    if json {
        let top3: Vec<serde_json::Value> =
            top.iter().map(|&(d, p)| serde_json::json!({"digit": d, "probability": p})).collect();
        let mut row = file_json(f);
        row.insert("digit".into(), top[0].0.into());
        row.insert("top3".into(), top3.into());
        outln!("{}", serde_json::Value::Object(row))?;
    } else {
        let rest: Vec<String> = top.iter().map(|&(d, p)| format!("{d} {:.1}%", 100.0 * p)).collect();
        outln!("{}: {}  ({})", f.display(), top[0].0, rest.join(", "))?;
    }
    Ok(())
}
