//! Checkpoints as safetensors, float32, with exactly the key names, shapes and
//! layouts of PyTorch's `state_dict()`. Optimizer state goes under `optim.m.<key>` /
//! `optim.v.<key>` and the training position and model spec in the metadata, so a
//! checkpoint resumes training exactly. Files are written atomically (`crate::files`).

use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::arch::{self, quoted, shortened};
use crate::data::parse_batch_size;
use crate::executor::{Optimizer, OptimizerState};
use crate::files::{read_file, write_atomic};
use crate::model::{Model, Shape, MAX_ELEMENTS};
use crate::schedule::Schedule;

const FORMAT: &str = "gpu-cnn/1";

/// The furthest step (and so epoch, as each takes a step) a checkpoint may say its run
/// is at: 2^53. No run gets there (a million steps a second for 285 years), steps up
/// to it are exact as the f64 of metrics and plots, and the trainer's counters have
/// room to go on counting: `gpu_cnn.global_step` 2^64 - 1 wrapped to 0 on the next
/// step and wrote a checkpoint nothing could resume.
pub const MAX_STEP: u64 = 1 << 53;

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
    /// The learning rate's schedule over the whole run (constant for checkpoints
    /// written before schedules existed).
    pub schedule: Schedule,
}

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub model: Model,
    pub params: Vec<f32>,
    pub optimizer: Option<(Optimizer, OptimizerState)>,
    pub position: Option<Position>,
    /// Which run wrote the file and at which step, when gpu-cnn's trainer did.
    pub stamp: Option<Stamp>,
}

/// The run a file belongs to and the step its weights are from, in the metadata
/// (`gpu_cnn.run`, `gpu_cnn.step`) of both files of a run's checkpoint pair and in each
/// line of its metrics.jsonl, so that a reader can tell which files go together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// 1 to 64 ASCII letters, digits, '-' or '_'.
    pub run: String,
    pub step: u64,
}

impl Stamp {
    /// A new run's identity: random (std's hasher keys are), so two runs never share one.
    pub fn new_run() -> String {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        h.write_u32(std::process::id());
        format!("{:016x}", h.finish())
    }

    pub fn is_valid_run(run: &str) -> bool {
        (1..=64).contains(&run.len()) && run.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
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
    to_bytes_stamped(model, params, optimizer, position, None)
}

/// `to_bytes`, with the run and step that wrote the file.
pub fn to_bytes_stamped(
    model: &Model,
    params: &[f32],
    optimizer: Option<(&Optimizer, &OptimizerState)>,
    position: Option<&Position>,
    stamp: Option<&Stamp>,
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
        meta.insert("gpu_cnn.schedule".into(), p.schedule.to_metadata());
    }
    if let Some(s) = stamp {
        meta.insert("gpu_cnn.run".into(), s.run.clone());
        meta.insert("gpu_cnn.step".into(), s.step.to_string());
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
        Optimizer::Sgd { lr, momentum, weight_decay } => {
            format!("sgd lr={lr} momentum={momentum} weight_decay={weight_decay}")
        }
        Optimizer::Adam { lr, beta1, beta2, eps, weight_decay } => {
            format!("adam lr={lr} beta1={beta1} beta2={beta2} eps={eps} weight_decay={weight_decay}")
        }
    }
}

/// Refuse optimizer hyper-parameters no run can use (they would make the first update
/// NaN or diverge): see `optimizer_problem`.
pub fn check_optimizer(opt: &Optimizer) -> Result<()> {
    match optimizer_problem(opt) {
        Some((name, v, range)) => bail!("{name} {v} must be {range}"),
        None => Ok(()),
    }
}

/// The first hyper-parameter of `opt` no run can use, as (name, value, what it must
/// be): lr finite and positive, momentum in [0, 1], Adam's betas in [0, 1) and eps
/// finite and positive, weight decay finite and at least 0.
pub fn optimizer_problem(opt: &Optimizer) -> Option<(&'static str, f32, &'static str)> {
    let positive = |v: f32| v.is_finite() && v > 0.0;
    let decay = opt.weight_decay();
    let (lr, checks) = match *opt {
        Optimizer::Sgd { lr, momentum, .. } => {
            (lr, vec![("momentum", momentum, (0.0..=1.0).contains(&momentum), "in [0, 1]")])
        }
        Optimizer::Adam { lr, beta1, beta2, eps, .. } => (
            lr,
            vec![
                ("beta1", beta1, (0.0..1.0).contains(&beta1), "in [0, 1)"),
                ("beta2", beta2, (0.0..1.0).contains(&beta2), "in [0, 1)"),
                ("eps", eps, positive(eps), "finite and positive"),
            ],
        ),
    };
    [("lr", lr, positive(lr), "finite and positive")]
        .into_iter()
        .chain(checks)
        .chain([("weight_decay", decay, decay.is_finite() && decay >= 0.0, "finite and at least 0")])
        .find(|&(_, _, ok, _)| !ok)
        .map(|(name, v, _, range)| (name, v, range))
}

/// The inverse of `optimizer_to_string`, strictly: every parameter of the optimizer
/// exactly once (weight_decay may be absent: checkpoints from before it read as 0),
/// nothing else, and values `check_optimizer` accepts.
fn optimizer_from_string(s: &str) -> Result<Optimizer> {
    let mut parts = s.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let names: &[&str] = match kind {
        "sgd" => &["lr", "momentum", "weight_decay"],
        "adam" => &["lr", "beta1", "beta2", "eps", "weight_decay"],
        _ => bail!("unknown optimizer {}", quoted(kind)),
    };
    let mut values: [Option<f32>; 5] = [None; 5];
    // The decay is last in each list, and optional.
    values[names.len() - 1] = Some(0.0);
    let mut seen = [false; 5];
    for part in parts {
        let (k, v) = part.split_once('=').ok_or_else(|| anyhow!("{} is not name=value", quoted(part)))?;
        let i = names.iter().position(|n| *n == k).ok_or_else(|| anyhow!("{kind} has no parameter {}", quoted(k)))?;
        if std::mem::replace(&mut seen[i], true) {
            bail!("{k} is given twice");
        }
        values[i] = Some(v.parse().map_err(|_| anyhow!("{k}={} is not a number", quoted(v)))?);
    }
    let get = |i: usize| values[i].ok_or_else(|| anyhow!("{kind} lacks {}", names[i]));
    let opt = match kind {
        "sgd" => Optimizer::Sgd { lr: get(0)?, momentum: get(1)?, weight_decay: get(2)? },
        _ => Optimizer::Adam { lr: get(0)?, beta1: get(1)?, beta2: get(2)?, eps: get(3)?, weight_decay: get(4)? },
    };
    check_optimizer(&opt)?;
    Ok(opt)
}

/// The largest checkpoint file read: weights and two optimizer vectors of the largest
/// model (`MAX_ELEMENTS` parameters), plus safetensors' largest header (100 MB).
pub const MAX_FILE_BYTES: u64 = 3 * 4 * MAX_ELEMENTS as u64 + (100 << 20) + 8;

/// Load a checkpoint. The model comes from its metadata when it has one (gpu-cnn
/// files), else `default_model` (a PyTorch `save_file(model.state_dict())` of the tutorial model).
/// Every key is checked: missing, extra, wrong dtype or shape is an error naming it, and
/// so is a value that is not finite; every metadata field is checked too.
pub fn load(path: &Path, default_model: &Model) -> Result<Checkpoint> {
    load_bytes(path, &read_file(path, MAX_FILE_BYTES)?, default_model)
}

/// `load` for a file already in memory; `path` names it in errors.
pub fn load_bytes(path: &Path, bytes: &[u8], default_model: &Model) -> Result<Checkpoint> {
    let p = path.display();
    let not_safetensors = |e: safetensors::SafeTensorError| {
        // The parser's messages can quote a whole header field.
        anyhow!("{p}: not a safetensors file ({})", shortened(&e.to_string(), 200))
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(not_safetensors)?;
    let st = SafeTensors::deserialize(bytes).map_err(not_safetensors)?;
    let meta = header.metadata().clone().unwrap_or_default();
    if let Some(f) = meta.get("gpu_cnn.format").filter(|f| *f != FORMAT) {
        bail!("{p}: metadata 'gpu_cnn.format' is {}; this gpu-cnn reads '{FORMAT}'", quoted(f));
    }
    let model = model_of(path, &meta, default_model)?;
    let optimizer = match meta.get("gpu_cnn.optimizer") {
        Some(s) => Some(optimizer_from_string(s).with_context(|| format!("{p}: metadata 'gpu_cnn.optimizer'"))?),
        None => None,
    };
    let vectors = 1 + optimizer.map_or(0, |o| o.state_vectors());
    // Every tensor's dtype and shape before any allocation: once they match, the file
    // holds every value, so what is allocated below is no larger than the file.
    let prefixes = ["", "optim.m.", "optim.v."];
    let mut views = Vec::with_capacity(vectors * model.params.len());
    for (k, prefix) in prefixes.iter().enumerate().take(vectors) {
        for param in &model.params {
            let key = format!("{prefix}{}", param.name);
            let view = f32_tensor(path, &st, &key, &param.shape)?;
            views.push((k, param, key, view));
        }
    }
    if st.len() != views.len() {
        let known: HashSet<&str> = views.iter().map(|v| v.2.as_str()).collect();
        let extra = st.names().into_iter().filter(|n| !known.contains(n)).min().unwrap_or_default();
        bail!("{p}: unexpected key {} for model {}", quoted(extra), quoted(&arch::spec_of(&model)));
    }
    let np = model.num_params;
    let mut values = vec![0f32; vectors * np];
    for (k, param, key, view) in &views {
        // Adam's v (k = 2) is a running mean of squares: a negative one makes sqrt NaN.
        let start = k * np + param.offset;
        read_values(path, key, view, &mut values[start..start + param.numel()], *k == 2)?;
    }
    let optimizer = match optimizer {
        Some(opt) => {
            let step = meta_num(path, &meta, "gpu_cnn.optimizer_step")?;
            Some((opt, OptimizerState { step, vectors: values.split_off(np) }))
        }
        None => None,
    };
    let position = position_of(path, &meta)?;
    let stamp = stamp_of(path, &meta, position.as_ref())?;
    Ok(Checkpoint { model, params: values, optimizer, position, stamp })
}

/// The run and step a file was written at, if its metadata says: both or neither, a
/// run name `Stamp::is_valid_run` accepts, and the position's step when it has one.
fn stamp_of(path: &Path, meta: &HashMap<String, String>, position: Option<&Position>) -> Result<Option<Stamp>> {
    let p = path.display();
    let run = match (meta.get("gpu_cnn.run"), meta.contains_key("gpu_cnn.step")) {
        (None, false) => return Ok(None),
        (Some(run), true) => run,
        (Some(_), false) => bail!("{p}: metadata has 'gpu_cnn.run' but lacks 'gpu_cnn.step'"),
        (None, true) => bail!("{p}: metadata has 'gpu_cnn.step' but lacks 'gpu_cnn.run'"),
    };
    if !Stamp::is_valid_run(run) {
        bail!("{p}: metadata 'gpu_cnn.run' is {}, not 1 to 64 letters, digits, '-' or '_'", quoted(run));
    }
    let step = meta_num(path, meta, "gpu_cnn.step")?;
    if let Some(pos) = position.filter(|pos| pos.global_step != step) {
        bail!("{p}: metadata 'gpu_cnn.step' is {step} but 'gpu_cnn.global_step' is {}", pos.global_step);
    }
    Ok(Some(Stamp { run: run.clone(), step }))
}

/// The model a checkpoint's metadata describes (`gpu_cnn.arch` for inputs `gpu_cnn.input`),
/// or `default_model` for a file without them.
fn model_of(path: &Path, meta: &HashMap<String, String>, default_model: &Model) -> Result<Model> {
    let p = path.display();
    let Some(spec) = meta.get("gpu_cnn.arch") else {
        return Ok(default_model.clone());
    };
    let input = match meta.get("gpu_cnn.input") {
        Some(s) => {
            let dims: Option<Vec<usize>> = s.split('x').map(|v| v.parse().ok()).collect();
            let input = match dims.as_deref() {
                Some(&[c, h, w]) => Shape::image(c, h, w),
                _ => bail!("{p}: metadata 'gpu_cnn.input' is {}, not CxHxW", quoted(s)),
            };
            input.check_input().with_context(|| format!("{p}: metadata 'gpu_cnn.input'"))?;
            input
        }
        None => default_model.input,
    };
    arch::parse_named(spec, input, "metadata 'gpu_cnn.arch'").with_context(|| p.to_string())
}

/// Where training stood, if the metadata says: every field present and in range, and
/// consistent (each finished epoch took at least one step).
fn position_of(path: &Path, meta: &HashMap<String, String>) -> Result<Option<Position>> {
    let p = path.display();
    const KEYS: [&str; 5] =
        ["gpu_cnn.epoch", "gpu_cnn.batch_in_epoch", "gpu_cnn.global_step", "gpu_cnn.epoch_rng", "gpu_cnn.batch_size"];
    if !KEYS.iter().any(|k| meta.contains_key(*k)) {
        return Ok(None);
    }
    let pos = Position {
        epoch: meta_num(path, meta, KEYS[0])?,
        batch_in_epoch: meta_num(path, meta, KEYS[1])?,
        global_step: meta_num(path, meta, KEYS[2])?,
        epoch_rng: meta_num(path, meta, KEYS[3])?,
        batch_size: {
            let s = meta_str(path, meta, KEYS[4])?;
            parse_batch_size(s).map_err(|e| anyhow!("{p}: metadata '{}' is {}: {e}", KEYS[4], quoted(s)))?
        },
        shuffle: match meta.get("gpu_cnn.shuffle").map(String::as_str) {
            None | Some("true") => true,
            Some("false") => false,
            Some(s) => bail!("{p}: metadata 'gpu_cnn.shuffle' is {}, not true or false", quoted(s)),
        },
        schedule: match meta.get("gpu_cnn.schedule") {
            None => Schedule::constant(),
            Some(s) => Schedule::from_metadata(s).map_err(|e| anyhow!("{p}: metadata 'gpu_cnn.schedule': {e}"))?,
        },
    };
    if pos.global_step > MAX_STEP {
        bail!(
            "{p}: metadata 'gpu_cnn.global_step' is {}, more steps than any run takes (at most 2^53)",
            pos.global_step
        );
    }
    if (pos.epoch as u64).checked_add(pos.batch_in_epoch as u64).is_none_or(|min| min > pos.global_step) {
        bail!(
            "{p}: metadata says epoch {} batch {} after only {} steps, but every epoch takes at least one step",
            pos.epoch,
            pos.batch_in_epoch,
            pos.global_step
        );
    }
    Ok(Some(pos))
}

/// A tensor with dtype F32 and shape `shape`, or an error naming `key`.
fn f32_tensor<'a>(path: &Path, st: &SafeTensors<'a>, key: &str, shape: &[usize]) -> Result<TensorView<'a>> {
    let p = path.display();
    let t = st.tensor(key).map_err(|_| anyhow!("{p}: missing key '{key}' (expected shape {shape:?})"))?;
    if t.dtype() != Dtype::F32 {
        bail!("{p}: key '{key}' has dtype {:?}, expected F32", t.dtype());
    }
    if t.shape() != shape {
        bail!("{p}: key '{key}' has shape {:?}, expected {shape:?}", t.shape());
    }
    Ok(t)
}

/// Copy a tensor's values into `out`, refusing NaN, infinities and, when `nonnegative`,
/// values below zero, by key and first bad index.
fn read_values(path: &Path, key: &str, t: &TensorView, out: &mut [f32], nonnegative: bool) -> Result<()> {
    // The data may be unaligned inside the file: decode bytewise.
    for (i, (o, b)) in out.iter_mut().zip(t.data().chunks_exact(4)).enumerate() {
        let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if !x.is_finite() || (nonnegative && x < 0.0) {
            let want = if nonnegative { "finite and never negative (Adam's v)" } else { "finite" };
            bail!("{}: key '{key}' holds {x} at index {i}; its values must be {want}", path.display());
        }
        *o = x;
    }
    Ok(())
}

fn meta_str<'a>(path: &Path, meta: &'a HashMap<String, String>, key: &str) -> Result<&'a str> {
    meta.get(key).map(String::as_str).ok_or_else(|| anyhow!("{}: metadata lacks '{key}'", path.display()))
}

fn meta_num<T: std::str::FromStr>(path: &Path, meta: &HashMap<String, String>, key: &str) -> Result<T> {
    let p = path.display();
    let v = meta_str(path, meta, key)?;
    v.parse().map_err(|_| {
        let ty = std::any::type_name::<T>();
        anyhow!("{p}: metadata '{key}' is {}, not a whole number that fits {ty}", quoted(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> Position {
        let schedule = Schedule::from_spec("cosine", 10, 1876, 938).unwrap();
        Position {
            epoch: 1,
            batch_in_epoch: 5,
            global_step: 942,
            epoch_rng: 12345,
            batch_size: 64,
            shuffle: true,
            schedule,
        }
    }

    /// A tutorial-model checkpoint with Adam state and a position, as bytes.
    fn adam_checkpoint() -> Vec<u8> {
        let model = Model::tutorial();
        let state = OptimizerState { step: 7, vectors: (0..2 * model.num_params).map(|i| i as f32).collect() };
        to_bytes(&model, &model.init_params(3), Some((&Optimizer::adam(1e-3), &state)), Some(&position())).unwrap()
    }

    /// `bytes` with metadata `key` set to `value` (or removed, for None).
    fn with_meta(bytes: &[u8], key: &str, value: Option<&str>) -> Vec<u8> {
        let st = SafeTensors::deserialize(bytes).unwrap();
        let mut meta = SafeTensors::read_metadata(bytes).unwrap().1.metadata().clone().unwrap();
        match value {
            Some(v) => meta.insert(key.to_string(), v.to_string()),
            None => meta.remove(key),
        };
        safetensors::serialize(st.tensors(), Some(meta)).unwrap()
    }

    /// `bytes` with element `index` of tensor `key` set to `x`.
    fn with_value(bytes: &[u8], key: &str, index: usize, x: f32) -> Vec<u8> {
        let st = SafeTensors::deserialize(bytes).unwrap();
        let meta = SafeTensors::read_metadata(bytes).unwrap().1.metadata().clone();
        let mut data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> =
            st.tensors().into_iter().map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect();
        let t = data.iter_mut().find(|t| t.0 == key).unwrap();
        t.3[index * 4..index * 4 + 4].copy_from_slice(&x.to_le_bytes());
        let views: Vec<(String, TensorView)> =
            data.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize(views, meta).unwrap()
    }

    fn load_err(bytes: &[u8]) -> String {
        format!("{:#}", load_bytes(Path::new("ck.safetensors"), bytes, &Model::tutorial()).unwrap_err())
    }

    #[test]
    fn round_trip_with_optimizer_and_position() {
        let dir = std::env::temp_dir().join(format!("gpu-cnn-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.safetensors");
        let model = Model::tutorial();
        let params = model.init_params(3);
        let opt = Optimizer::adam(1e-3);
        let state = OptimizerState { step: 7, vectors: (0..2 * model.num_params).map(|i| i as f32).collect() };
        let pos = position();
        save(&path, &model, &params, Some((&opt, &state)), Some(&pos)).unwrap();
        let c = load(&path, &Model::tutorial()).unwrap();
        assert_eq!(c.model, model);
        assert_eq!(c.params, params);
        assert_eq!(c.optimizer, Some((opt, state)));
        assert_eq!(c.position, Some(pos));
        // SGD: one state vector.
        let sgd = Optimizer::sgd(0.05, 0.9);
        let state = OptimizerState { step: 3, vectors: vec![0.5; model.num_params] };
        save(&path, &model, &params, Some((&sgd, &state)), Some(&pos)).unwrap();
        assert_eq!(load(&path, &Model::tutorial()).unwrap().optimizer, Some((sgd, state)));
        // Weights only: loads with no optimizer and no position.
        save(&path, &model, &params, None, None).unwrap();
        let c = load(&path, &Model::tutorial()).unwrap();
        assert!(c.optimizer.is_none() && c.position.is_none());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn huge_metadata_input_is_refused_before_allocating() {
        let bytes = with_meta(&adam_checkpoint(), "gpu_cnn.input", Some("1x100000x100000"));
        let t = std::time::Instant::now();
        let e = load_err(&bytes);
        assert!(e.contains("ck.safetensors") && e.contains("gpu_cnn.input") && e.contains("1..=4096"), "{e}");
        assert!(t.elapsed().as_secs_f64() < 1.0);
        for bad in ["28x28", "1x28x28x1", "1x-28x28", "ax28x28", ""] {
            let e = load_err(&with_meta(&adam_checkpoint(), "gpu_cnn.input", Some(bad)));
            assert!(e.contains("gpu_cnn.input") && e.contains("not CxHxW"), "{bad}: {e}");
        }
        // A model metadata admits, but whose tensors the file lacks: named, not allocated.
        let bytes = with_meta(&adam_checkpoint(), "gpu_cnn.arch", Some("c64k5 relu flat fc250"));
        let e = load_err(&bytes);
        assert!(e.contains("missing key 'layers.0.weight'"), "{e}");
    }

    #[test]
    fn every_position_field_is_checked() {
        let good = adam_checkpoint();
        for (key, value, want) in [
            ("gpu_cnn.batch_size", Some("0"), "'gpu_cnn.batch_size' is '0'"),
            ("gpu_cnn.batch_size", Some("-3"), "whole number in 1..="),
            ("gpu_cnn.batch_size", None, "lacks 'gpu_cnn.batch_size'"),
            ("gpu_cnn.epoch", Some("943"), "epoch 943 batch 5 after only 942 steps"),
            ("gpu_cnn.batch_in_epoch", Some("18446744073709551616"), "fits usize"),
            ("gpu_cnn.global_step", Some("5"), "epoch 1 batch 5 after only 5 steps"),
            ("gpu_cnn.global_step", Some("18446744073709551615"), "is 18446744073709551615, more steps"),
            ("gpu_cnn.global_step", Some("9007199254740993"), "'gpu_cnn.global_step' is 9007199254740993, more steps"),
            ("gpu_cnn.epoch_rng", Some("1e9"), "'gpu_cnn.epoch_rng' is '1e9', not a whole number that fits u64"),
            ("gpu_cnn.shuffle", Some("yes"), "'gpu_cnn.shuffle' is 'yes', not true or false"),
            ("gpu_cnn.optimizer_step", Some("4294967296"), "fits u32"),
            ("gpu_cnn.format", Some("gpu-cnn/2"), "'gpu_cnn.format' is 'gpu-cnn/2'"),
            ("gpu_cnn.schedule", Some("cosine warmup=9 total=5"), "'gpu_cnn.schedule': a warmup of 9 steps"),
            ("gpu_cnn.schedule", Some("linear warmup=0 total=9"), "unknown schedule 'linear'"),
        ] {
            let e = load_err(&with_meta(&good, key, value));
            assert!(e.contains("ck.safetensors") && e.contains(want), "{key}={value:?}: {e}");
        }
        let c = load_bytes(Path::new("c"), &with_meta(&good, "gpu_cnn.shuffle", None), &Model::tutorial()).unwrap();
        assert!(c.position.unwrap().shuffle, "a checkpoint without the field shuffles, as before it existed");
        let c = load_bytes(Path::new("c"), &with_meta(&good, "gpu_cnn.schedule", None), &Model::tutorial()).unwrap();
        assert!(c.position.unwrap().schedule.is_constant(), "a checkpoint without a schedule ran at a constant rate");
        let c = load_bytes(Path::new("c"), &good, &Model::tutorial()).unwrap();
        assert_eq!(c.position, Some(position()), "the position and its schedule round trip");
    }

    #[test]
    fn optimizer_hyper_parameters_are_checked() {
        let good = adam_checkpoint();
        for (value, want) in [
            ("adam lr=-0.001 beta1=0.9 beta2=0.999 eps=1e-8", "lr -0.001 must be finite and positive"),
            ("adam lr=NaN beta1=0.9 beta2=0.999 eps=1e-8", "lr NaN must be"),
            ("adam lr=inf beta1=0.9 beta2=0.999 eps=1e-8", "lr inf must be"),
            ("adam lr=0.001 beta1=1 beta2=0.999 eps=1e-8", "beta1 1 must be in [0, 1)"),
            ("adam lr=0.001 beta1=0.9 beta2=-0.5 eps=1e-8", "beta2 -0.5 must be in [0, 1)"),
            ("adam lr=0.001 beta1=0.9 beta2=0.999 eps=0", "eps 0 must be finite and positive"),
            ("adam lr=0.001 beta1=0.9 beta2=0.999", "adam lacks eps"),
            ("adam lr=0.001 lr=0.002 beta1=0.9 beta2=0.999 eps=1e-8", "lr is given twice"),
            ("adam lr=0.001 beta1=0.9 beta2=0.999 eps=1e-8 momentum=0.9", "adam has no parameter 'momentum'"),
            ("adam lr=0.001 beta1 beta2=0.999 eps=1e-8", "'beta1' is not name=value"),
            ("adam lr=fast beta1=0.9 beta2=0.999 eps=1e-8", "lr='fast' is not a number"),
            ("rmsprop lr=0.001", "unknown optimizer 'rmsprop'"),
        ] {
            let e = load_err(&with_meta(&good, "gpu_cnn.optimizer", Some(value)));
            assert!(e.contains("ck.safetensors") && e.contains(want), "{value}: {e}");
        }
        let sgd = Optimizer::sgd(0.1, 0.9);
        let state = OptimizerState { step: 1, vectors: vec![0.0; Model::tutorial().num_params] };
        let m = Model::tutorial();
        let ok = to_bytes(&m, &m.init_params(0), Some((&sgd, &state)), None).unwrap();
        let e = load_err(&with_meta(&ok, "gpu_cnn.optimizer", Some("sgd lr=0.1 momentum=1.5")));
        assert!(e.contains("momentum 1.5 must be in [0, 1]"), "{e}");
        check_optimizer(&Optimizer::sgd(0.1, 1.0)).unwrap();
    }

    #[test]
    fn non_finite_values_are_refused_by_key_and_index() {
        let good = adam_checkpoint();
        for (key, x, want) in [
            ("conv1.0.weight", f32::NAN, "key 'conv1.0.weight' holds NaN at index 3"),
            ("out.bias", f32::INFINITY, "key 'out.bias' holds inf at index 3"),
            ("optim.m.conv2.2.weight", f32::NEG_INFINITY, "key 'optim.m.conv2.2.weight' holds -inf at index 3"),
            ("optim.v.out.weight", -1.0, "key 'optim.v.out.weight' holds -1 at index 3"),
        ] {
            let e = load_err(&with_value(&good, key, 3, x));
            assert!(e.contains("ck.safetensors") && e.contains(want), "{key}: {e}");
        }
        // A negative m is fine: it is a running mean of gradients.
        load_bytes(Path::new("c"), &with_value(&good, "optim.m.out.weight", 3, -1.0), &Model::tutorial()).unwrap();
    }

    #[test]
    fn a_bad_model_spec_is_blamed_on_the_metadata_not_on_arch() {
        for (spec, want) in [
            ("relu ".repeat(1025), "ck.safetensors: metadata 'gpu_cnn.arch' has more than 1024 layers"),
            ("c8k5 relu conv9".into(), "ck.safetensors: metadata 'gpu_cnn.arch' layer 3 'conv9'"),
            ("".into(), "ck.safetensors: metadata 'gpu_cnn.arch' is empty"),
            ("c8k5 relu".into(), "ck.safetensors: metadata 'gpu_cnn.arch' 'c8k5 relu': the model must end in a Linear"),
        ] {
            let e = load_err(&with_meta(&adam_checkpoint(), "gpu_cnn.arch", Some(&spec)));
            assert!(e.starts_with(want) && !e.contains("--arch"), "{}: {e}", shortened(&spec, 40));
        }
    }

    #[test]
    fn long_metadata_is_quoted_short() {
        let long = "x".repeat(10 << 20);
        for key in [
            "gpu_cnn.arch",
            "gpu_cnn.input",
            "gpu_cnn.optimizer",
            "gpu_cnn.epoch",
            "gpu_cnn.format",
            "gpu_cnn.schedule",
        ] {
            let e = load_err(&with_meta(&adam_checkpoint(), key, Some(&long)));
            assert!(e.len() < 500, "{key}: {} bytes of error", e.len());
            assert!(e.contains("ck.safetensors") && e.contains("… (10485760 bytes)"), "{key}: {e}");
        }
    }

    #[test]
    fn stamps_round_trip_and_are_checked() {
        let m = Model::tutorial();
        let state = OptimizerState { step: 942, vectors: vec![0.0; 2 * m.num_params] };
        let stamp = Stamp { run: "0123abcd".into(), step: 942 };
        let opt = Some((&Optimizer::adam(1e-3), &state));
        let stamped = to_bytes_stamped(&m, &m.init_params(0), opt, Some(&position()), Some(&stamp)).unwrap();
        assert_eq!(load_bytes(Path::new("c"), &stamped, &m).unwrap().stamp, Some(stamp.clone()));
        let weights = to_bytes_stamped(&m, &m.init_params(0), None, None, Some(&stamp)).unwrap();
        assert_eq!(load_bytes(Path::new("w"), &weights, &m).unwrap().stamp, Some(stamp));
        assert!(load_bytes(Path::new("w"), &adam_checkpoint(), &m).unwrap().stamp.is_none());
        let run = Stamp::new_run();
        assert!(Stamp::is_valid_run(&run) && run != Stamp::new_run(), "{run}");
        for (key, value, want) in [
            ("gpu_cnn.run", Some("a b"), "'gpu_cnn.run' is 'a b', not 1 to 64 letters"),
            ("gpu_cnn.run", Some(""), "'gpu_cnn.run' is '', not 1 to 64"),
            ("gpu_cnn.run", None, "has 'gpu_cnn.step' but lacks 'gpu_cnn.run'"),
            ("gpu_cnn.step", None, "has 'gpu_cnn.run' but lacks 'gpu_cnn.step'"),
            ("gpu_cnn.step", Some("-1"), "'gpu_cnn.step' is '-1', not a whole number"),
            ("gpu_cnn.step", Some("941"), "'gpu_cnn.step' is 941 but 'gpu_cnn.global_step' is 942"),
        ] {
            let e = format!("{:#}", load_bytes(Path::new("ck"), &with_meta(&stamped, key, value), &m).unwrap_err());
            assert!(e.contains("ck: ") && e.contains(want), "{key}={value:?}: {e}");
        }
    }
}
