//! `gpu-cnn explain`: a picture sheet of what happens inside the network for each
//! picture (and with `--json` the same numbers), from one forward and backward pass.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use gpu_cnn::arch;
use gpu_cnn::executor::Explanation;
use gpu_cnn::files::write_atomic;
use gpu_cnn::model::{Model, Shape};
use gpu_cnn::plot::{self, Filters, Sheet};
use gpu_cnn::preprocess::{self, Digit};

use super::pictures;
use super::{DeviceArgs, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG, BMP, GIF, TIFF, WebP) or directories of them
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Directory for the sheets, <stem>.explain.png (created if missing)
    #[arg(long, default_value = "explain")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Also write <stem>.explain.json with the numbers the sheet draws
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Explain every picture. One that cannot be read is reported on stderr and the others
/// still get their sheets; the exit is then non-zero. What no picture can get past (the
/// weights, the output directory, the executor) stops at once.
pub fn run(a: Args) -> Result<()> {
    let (backend, gemm) = a.device.resolve()?;
    let (files, errors) = pictures::expand(&a.images);
    let stems = pictures::stems(&files);
    let outputs: Vec<PathBuf> = stems
        .iter()
        .flat_map(|stem| [sheet_of(&a.out, stem)].into_iter().chain(a.json.then(|| json_of(&a.out, stem))))
        .collect();
    let inputs: Vec<&Path> = files.iter().chain(&a.model.weights).map(PathBuf::as_path).collect();
    pictures::refuse_overwriting_inputs(&inputs, &outputs, "--out")?;
    let (weights, ck) = a.model.load_for_pictures()?;
    let mut net = super::explainer(backend, gemm, ck.model.clone(), &ck.params)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create the directory {}", a.out.display()))?;
    let filters = Filters::of(&ck.model, &ck.params);
    let backend = net.describe();
    let about = [
        format!("model: {} ({} parameters)", arch::spec_of(&ck.model), ck.model.num_params),
        format!("weights: {}  ·  run on: {backend}", a.model.shown()),
    ];
    for e in &errors {
        errln!("error: {e:#}");
    }
    let total = files.len() + errors.len();
    let mut failed = errors.len();
    for (file, stem) in files.iter().zip(&stems) {
        let (picture, digit) = match read(file) {
            Ok(read) => read,
            Err(e) => {
                errln!("error: {e:#}");
                failed += 1;
                continue;
            }
        };
        // The activations of every layer and the saliency, read back in one go.
        let e = net.explain(&digit)?;
        let png = sheet_of(&a.out, stem);
        let name = file.display().to_string();
        let sheet = Sheet {
            name: &name,
            about: &about,
            picture: &picture,
            input: &digit,
            model: &ck.model,
            explanation: &e,
            filters: filters.as_ref(),
        };
        plot::explain_sheet(&sheet, &png)?;
        let mut wrote = png.display().to_string();
        if a.json {
            let path = json_of(&a.out, stem);
            let doc = to_json(file, &weights, &backend, net.model(), &digit, &e, filters.as_ref());
            write_atomic(&path, format!("{doc}\n").as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            wrote += &format!(" and {}", path.display());
        }
        let p = e.probs.get(e.prediction as usize).copied().unwrap_or(f32::NAN);
        outln!("{name}: {} ({:.1}%) -> {wrote}", e.prediction, 100.0 * p)?;
    }
    match failed {
        0 => Ok(()),
        f if f == total => bail!("no sheet drawn: {f} of {f} pictures could not be read"),
        f => bail!("{f} of {total} pictures could not be read; the others were explained"),
    }
}

/// Where the sheet of the picture of `stem` goes.
fn sheet_of(out: &Path, stem: &str) -> PathBuf {
    out.join(format!("{stem}.explain.png"))
}

/// Where `--json` puts the numbers of the picture of `stem`.
fn json_of(out: &Path, stem: &str) -> PathBuf {
    out.join(format!("{stem}.explain.json"))
}

/// A picture file, decoded, and the input it makes.
fn read(file: &Path) -> Result<(image::RgbaImage, Digit)> {
    let picture = preprocess::load_image(file)?;
    let digit = preprocess::prepare(&picture).with_context(|| file.display().to_string())?;
    Ok((picture, digit))
}

fn dims(s: Shape) -> Vec<usize> {
    if s.flat {
        vec![s.c]
    } else {
        vec![s.c, s.h, s.w]
    }
}

/// f32s as JSON numbers with their shortest decimal form ("0.50036526", not
/// "0.5003652572631836"): the file is about half the size and reads back to the same f32.
fn numbers(values: &[f32]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| {
                v.to_string()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            })
            .collect(),
    )
}

fn tensor(shape: Vec<usize>, values: &[f32]) -> Value {
    json!({"shape": shape, "values": numbers(values)})
}

/// The numbers of one sheet; the keys are documented in docs/explain.md.
fn to_json(
    file: &Path,
    weights: &Path,
    backend: &str,
    model: &Model,
    input: &[f32],
    e: &Explanation,
    filters: Option<&Filters>,
) -> Value {
    let maps: Vec<Value> = e
        .maps
        .iter()
        .map(|m| json!({"layer": m.layer, "shape": dims(m.shape), "values": numbers(&m.values)}))
        .collect();
    json!({
        "file": file.display().to_string(),
        "weights": weights.display().to_string(),
        "arch": arch::spec_of(model),
        "backend": backend,
        "prediction": e.prediction,
        "probabilities": numbers(&e.probs),
        "input": tensor(dims(model.input), input),
        "maps": maps,
        "saliency": tensor(dims(model.input), &e.saliency),
        "filters": filters.map(|f| json!({"param": f.param, "shape": f.shape, "values": numbers(&f.values)})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_read_back_to_the_same_f32() {
        // A probability as f64 rounds it to the nearest f32 first.
        let values = [0.5003652572631836f64 as f32, 1e-7, -3.25, 0.0, f32::NAN];
        let Value::Array(json) = numbers(&values) else { panic!() };
        for (v, j) in values.iter().zip(&json).take(4) {
            assert_eq!(j.as_f64().unwrap() as f32, *v, "{j}");
        }
        assert_eq!(json[0].to_string(), "0.50036526");
        assert!(json[4].is_null());
    }
}
