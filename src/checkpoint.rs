//! Checkpoints as safetensors, float32, with exactly the key names, shapes and
//! layouts of PyTorch's `state_dict()`. Optimizer state goes under `optim.m.<key>` /
//! `optim.v.<key>` and the training position and model spec in the metadata, so a
//! checkpoint resumes training exactly. Files are written atomically.

use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::arch;
use crate::executor::{Optimizer, OptimizerState};
use crate::model::{Model, Shape};

const FORMAT: &str = "gpu-cnn/1";

/// Where training stood: enough to continue the same run bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Epoch in progress (from 0) and batches of it already done.
    pub epoch: usize,
    pub batch_in_epoch: usize,
    pub global_step: u64,
    /// RNG state at the start of `epoch`, before its shuffle.
    pub epoch_rng: u64,
    pub batch_size: usize,
    pub shuffle: bool,
}

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub model: Model,
    pub params: Vec<f32>,
    pub optimizer: Option<(Optimizer, OptimizerState)>,
    pub position: Option<Position>,
}

/// Write `bytes` to `path` so that a crash at any moment leaves either the old file or
/// the new one: a temporary file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| anyhow!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        // Make the rename itself durable (not possible on every platform; best effort).
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().ok();
        }
        Ok(())
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

fn f32_bytes(x: &[f32]) -> &[u8] {
    bytemuck::cast_slice(x)
}

/// Serialize weights (and optionally optimizer state and position) to safetensors bytes.
pub fn to_bytes(
    model: &Model,
    params: &[f32],
    optimizer: Option<(&Optimizer, &OptimizerState)>,
    position: Option<&Position>,
) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, TensorView)> = Vec::new();
    for p in &model.params {
        let data = f32_bytes(&params[p.offset..p.offset + p.numel()]);
        tensors.push((p.name.clone(), TensorView::new(Dtype::F32, p.shape.clone(), data)?));
    }
    let mut meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("gpu_cnn.format".to_string(), FORMAT.to_string()),
        ("gpu_cnn.arch".to_string(), arch::spec_of(model)),
        ("gpu_cnn.input".to_string(), format!("{}x{}x{}", model.input.c, model.input.h, model.input.w)),
    ]);
    if let Some((opt, state)) = optimizer {
        let np = model.num_params;
        let names = ["m", "v"];
        for (k, name) in names.iter().enumerate().take(opt.state_vectors()) {
            for p in &model.params {
                let data = f32_bytes(&state.vectors[k * np + p.offset..k * np + p.offset + p.numel()]);
                tensors.push((format!("optim.{name}.{}", p.name), TensorView::new(Dtype::F32, p.shape.clone(), data)?));
            }
        }
        meta.insert("gpu_cnn.optimizer".into(), optimizer_to_string(opt));
        meta.insert("gpu_cnn.optimizer_step".into(), state.step.to_string());
    }
    if let Some(p) = position {
        meta.insert("gpu_cnn.epoch".into(), p.epoch.to_string());
        meta.insert("gpu_cnn.batch_in_epoch".into(), p.batch_in_epoch.to_string());
        meta.insert("gpu_cnn.global_step".into(), p.global_step.to_string());
        meta.insert("gpu_cnn.epoch_rng".into(), p.epoch_rng.to_string());
        meta.insert("gpu_cnn.batch_size".into(), p.batch_size.to_string());
        meta.insert("gpu_cnn.shuffle".into(), p.shuffle.to_string());
    }
    Ok(safetensors::serialize(tensors, Some(meta))?)
}

pub fn save(
    path: &Path,
    model: &Model,
    params: &[f32],
    optimizer: Option<(&Optimizer, &OptimizerState)>,
    position: Option<&Position>,
) -> Result<()> {
    write_atomic(path, &to_bytes(model, params, optimizer, position)?)
}

fn optimizer_to_string(opt: &Optimizer) -> String {
    match *opt {
        Optimizer::Sgd { lr, momentum } => format!("sgd lr={lr} momentum={momentum}"),
        Optimizer::Adam { lr, beta1, beta2, eps } => format!("adam lr={lr} beta1={beta1} beta2={beta2} eps={eps}"),
    }
}

fn optimizer_from_string(s: &str) -> Result<Optimizer> {
    let mut parts = s.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let kv: HashMap<&str, f32> = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| v.parse().map(|v| (k, v)).map_err(|_| anyhow!("bad optimizer value '{p}'", p = v)))
        .collect::<Result<_>>()?;
    let get = |k: &str| kv.get(k).copied().ok_or_else(|| anyhow!("optimizer metadata '{s}' lacks {k}"));
    Ok(match kind {
        "sgd" => Optimizer::Sgd { lr: get("lr")?, momentum: get("momentum")? },
        "adam" => Optimizer::Adam { lr: get("lr")?, beta1: get("beta1")?, beta2: get("beta2")?, eps: get("eps")? },
        _ => bail!("unknown optimizer '{kind}' in checkpoint metadata"),
    })
}

fn read_f32(path: &Path, st: &SafeTensors, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t =
        st.tensor(key).map_err(|_| anyhow!("{}: missing key '{key}' (expected shape {shape:?})", path.display()))?;
    if t.dtype() != Dtype::F32 {
        bail!("{}: key '{key}' has dtype {:?}, expected F32", path.display(), t.dtype());
    }
    if t.shape() != shape {
        bail!("{}: key '{key}' has shape {:?}, expected {shape:?}", path.display(), t.shape());
    }
    // The data may be unaligned inside the file: copy bytewise.
    Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
}

/// Load a checkpoint. The model comes from its metadata when it has one (gpu-cnn
/// files), else `default_model` (a PyTorch `save_file(model.state_dict())` of the seed).
/// Every key is checked: missing, extra, wrong dtype or shape is an error naming it.
pub fn load(path: &Path, default_model: &Model) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("{}: not a safetensors file ({e})", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let model = match meta.get("gpu_cnn.arch") {
        Some(spec) => {
            let input = match meta.get("gpu_cnn.input") {
                Some(s) => {
                    let d: Vec<usize> = s
                        .split('x')
                        .map(|v| v.parse())
                        .collect::<Result<_, _>>()
                        .map_err(|_| anyhow!("{}: bad input shape '{s}' in metadata", path.display()))?;
                    if d.len() != 3 {
                        bail!("{}: bad input shape '{s}' in metadata", path.display());
                    }
                    Shape::image(d[0], d[1], d[2])
                }
                None => default_model.input,
            };
            arch::parse(spec, input).with_context(|| format!("{}: its model spec", path.display()))?
        }
        None => default_model.clone(),
    };
    let mut params = vec![0f32; model.num_params];
    for p in &model.params {
        params[p.offset..p.offset + p.numel()].copy_from_slice(&read_f32(path, &st, &p.name, &p.shape)?);
    }
    let optimizer = match meta.get("gpu_cnn.optimizer") {
        Some(s) => {
            let opt = optimizer_from_string(s).with_context(|| path.display().to_string())?;
            let np = model.num_params;
            let mut vectors = vec![0f32; np * opt.state_vectors()];
            for (k, name) in ["m", "v"].iter().enumerate().take(opt.state_vectors()) {
                for p in &model.params {
                    let v = read_f32(path, &st, &format!("optim.{name}.{}", p.name), &p.shape)?;
                    vectors[k * np + p.offset..k * np + p.offset + p.numel()].copy_from_slice(&v);
                }
            }
            let step = meta_num(path, &meta, "gpu_cnn.optimizer_step")?;
            Some((opt, OptimizerState { step: step as u32, vectors }))
        }
        None => None,
    };
    let expected = model.params.len() + optimizer.as_ref().map_or(0, |(o, _)| o.state_vectors() * model.params.len());
    if st.len() != expected {
        let known: Vec<String> = model.params.iter().map(|p| p.name.clone()).collect();
        let extra = st
            .names()
            .into_iter()
            .find(|n| !known.iter().any(|k| k == n) && !n.starts_with("optim."))
            .map(|n| n.to_string())
            .unwrap_or_else(|| "optimizer state".to_string());
        bail!("{}: unexpected key '{extra}' for model '{}'", path.display(), arch::spec_of(&model));
    }
    let position = if meta.contains_key("gpu_cnn.global_step") {
        Some(Position {
            epoch: meta_num(path, &meta, "gpu_cnn.epoch")? as usize,
            batch_in_epoch: meta_num(path, &meta, "gpu_cnn.batch_in_epoch")? as usize,
            global_step: meta_num(path, &meta, "gpu_cnn.global_step")?,
            epoch_rng: meta_num(path, &meta, "gpu_cnn.epoch_rng")?,
            batch_size: meta_num(path, &meta, "gpu_cnn.batch_size")? as usize,
            shuffle: meta.get("gpu_cnn.shuffle").map(|s| s == "true").unwrap_or(true),
        })
    } else {
        None
    };
    Ok(Checkpoint { model, params, optimizer, position })
}

fn meta_num(path: &Path, meta: &HashMap<String, String>, key: &str) -> Result<u64> {
    meta.get(key)
        .ok_or_else(|| anyhow!("{}: metadata lacks '{key}'", path.display()))?
        .parse()
        .map_err(|_| anyhow!("{}: metadata '{key}' is not a number", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_optimizer_and_position() {
        let dir = std::env::temp_dir().join(format!("gpu-cnn-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.safetensors");
        let model = Model::tutorial();
        let params = model.init_params(3);
        let opt = Optimizer::adam(1e-3);
        let state = OptimizerState { step: 7, vectors: (0..2 * model.num_params).map(|i| i as f32).collect() };
        let pos =
            Position { epoch: 1, batch_in_epoch: 5, global_step: 942, epoch_rng: 12345, batch_size: 64, shuffle: true };
        save(&path, &model, &params, Some((&opt, &state)), Some(&pos)).unwrap();
        let c = load(&path, &Model::tutorial()).unwrap();
        assert_eq!(c.model, model);
        assert_eq!(c.params, params);
        assert_eq!(c.optimizer, Some((opt, state)));
        assert_eq!(c.position, Some(pos));
        // Weights only: loads with no optimizer and no position.
        save(&path, &model, &params, None, None).unwrap();
        let c = load(&path, &Model::tutorial()).unwrap();
        assert!(c.optimizer.is_none() && c.position.is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
