//! Issue #12, "never panic, never lose a run": every bad input is refused with exit
//! code 1 and a message naming the file and the problem, never a panic (101), an abort
//! or a hang. Two parts:
//!
//! - regression tests through the binary, one per defect of the issue the CLI shows
//!   (the library-level ones live next to the code: data, checkpoint, model, arch,
//!   preprocess);
//! - a bounded mutation test of the four parsers users feed (IDX datasets, checkpoints,
//!   pictures, `--arch` specs): valid inputs mutated from a fixed seed (bit flips,
//!   truncation, header fields set to huge or zero values, random bytes, …), each of
//!   which must load or fail with a message naming the input, never panic. The case
//!   counts are the `CASES` constants below: 30,000 IDX pairs, 8,000 checkpoints,
//!   20,000 pictures and 40,000 specs, 2.7 s in all on one core in release mode (the
//!   four tests run in parallel). Each reports how many cases loaded (`--nocapture`).
//!   The cargo-fuzz targets in `fuzz/` explore the same entry points without bounds.

use assert_cmd::Command;
use std::collections::HashMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use gpu_cnn::arch;
use gpu_cnn::checkpoint::{self, Position};
use gpu_cnn::data::{bundled_mnist_dir, Dataset, Split};
use gpu_cnn::executor::{Optimizer, OptimizerState};
use gpu_cnn::model::{Model, Shape};
use gpu_cnn::preprocess;
use gpu_cnn::rng::Rng;
use safetensors::tensor::SafeTensors;

mod common;

use common::{bin, exits_with, fails_with, idx_bytes_with_magic as idx_bytes};

/// Write one split (`train` or `t10k`) of `labels.len()` blank pictures of `rows`x`cols`.
fn write_split(dir: &Path, split: &str, rows: u32, cols: u32, labels: &[u8]) {
    let blank = vec![0; labels.len() * (rows * cols) as usize];
    common::write_split(dir, split, rows, cols, &blank, labels);
}

fn train_on(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["train", "--batch-size", "2", "--backend", "cpu", "--data"]).arg(data).arg("--out").arg(out).args(extra);
    c
}

const FIVE_CLASSES: &str = "c2k3 relu pool2 flat fc5";

#[test]
fn labels_the_model_cannot_output_are_refused_before_any_work() {
    // Item 2: a test label >= the model's outputs panicked evaluation after an epoch.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_split(&data, "train", 28, 28, &[0, 1, 2, 3, 4]);
    write_split(&data, "t10k", 28, 28, &[0, 9]);
    let out = tmp.path().join("out");
    fails_with(
        &mut train_on(&data, &out, &["--steps", "1", "--arch", FIVE_CLASSES]),
        &["t10k-labels-idx1-ubyte", "label 9 at index 1", "5 outputs"],
    );
    assert!(!out.join("checkpoint.safetensors").exists(), "it trained before checking the test split");

    let model = arch::parse(FIVE_CLASSES, Shape::image(1, 28, 28)).unwrap();
    let weights = tmp.path().join("five.safetensors");
    checkpoint::save(&weights, &model, &model.init_params(0), None, None).unwrap();
    let mut c = bin();
    c.args(["eval", "--backend", "cpu", "--weights"]).arg(&weights).arg("--data").arg(&data);
    fails_with(&mut c, &["t10k-labels-idx1-ubyte", "label 9 at index 1", "5 outputs"]);
}

#[test]
fn test_pictures_of_another_size_are_refused_before_any_work() {
    // Item 20: a 14x56 or 1x784 test split was evaluated as 28x28; 27x28 failed after an epoch.
    let tmp = tempfile::tempdir().unwrap();
    for (rows, cols) in [(14, 56), (1, 784), (27, 28)] {
        let data = tmp.path().join(format!("d{rows}x{cols}"));
        write_split(&data, "train", 28, 28, &[0, 1, 2]);
        write_split(&data, "t10k", rows, cols, &[0, 1]);
        let out = tmp.path().join("out");
        let size = format!("{rows}x{cols}");
        fails_with(&mut train_on(&data, &out, &["--steps", "1"]), &["t10k-images-idx3-ubyte", &size, "28x28"]);
        assert!(!out.join("checkpoint.safetensors").exists());
        let mut c = bin();
        c.args(["eval", "--backend", "cpu", "--data"]).arg(&data);
        fails_with(&mut c, &["t10k-images-idx3-ubyte", &size, "28x28"]);
    }
}

#[test]
fn empty_splits_are_errors_naming_the_file() {
    // Item 10: an empty train split spun forever; an empty test split gave "accuracy 0.00%".
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("empty-train");
    write_split(&data, "train", 28, 28, &[]);
    write_split(&data, "t10k", 28, 28, &[0]);
    let mut c = train_on(&data, &tmp.path().join("out"), &["--epochs", "1000000"]);
    fails_with(&mut c, &["train-images-idx3-ubyte", "no images"]);
    let data = tmp.path().join("empty-test");
    write_split(&data, "t10k", 28, 28, &[]);
    let mut c = bin();
    c.args(["eval", "--backend", "cpu", "--data"]).arg(&data);
    fails_with(&mut c, &["t10k-images-idx3-ubyte", "no images"]);
}

#[test]
fn zero_log_every_and_zero_batch_sizes_are_refused_by_the_parser() {
    // Item 3: --log-every 0 divided by zero; item 25: eval --batch-size 0 became 1.
    let mut c = bin();
    c.args(["train", "--log-every", "0"]);
    exits_with(&mut c, 2, &["--log-every", "'0'"]);
    for cmd in ["train", "eval"] {
        let mut c = bin();
        c.args([cmd, "--batch-size", "0"]);
        exits_with(&mut c, 2, &["--batch-size", "'0'", "1..="]);
    }
}

#[test]
fn pictures_without_pixels_are_refused_by_name() {
    // Item 4: a GIF with a 0x0 logical screen panicked the border median.
    let tmp = tempfile::tempdir().unwrap();
    let mut gif = Vec::new();
    image::DynamicImage::ImageRgba8(image::RgbaImage::new(1, 1))
        .write_to(&mut std::io::Cursor::new(&mut gif), image::ImageFormat::Gif)
        .unwrap();
    gif[6..10].fill(0); // the logical screen's width and height
    let p = tmp.path().join("screen.gif");
    std::fs::write(&p, gif).unwrap();
    let mut c = bin();
    c.args(["infer", "--backend", "cpu"]).arg(&p);
    fails_with(&mut c, &["screen.gif", "0x0 pixels"]);
}

/// `bytes` (a safetensors file) with metadata `key` set to `value`.
fn with_meta(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut meta: HashMap<String, String> =
        SafeTensors::read_metadata(bytes).unwrap().1.metadata().clone().unwrap_or_default();
    meta.insert(key.into(), value.into());
    safetensors::serialize(st.tensors(), Some(meta)).unwrap()
}

fn infer_with(weights: &Path) -> Command {
    let mut c = bin();
    c.args(["infer", "tests/images/7_black_on_white.png", "--backend", "cpu", "--weights"]).arg(weights);
    c
}

#[test]
fn checkpoint_metadata_is_checked_before_allocating() {
    // Item 6: input 1x100000x100000 aborted with a 1.6 TB allocation.
    let tmp = tempfile::tempdir().unwrap();
    let m = Model::tutorial();
    let good = checkpoint::to_bytes(&m, &m.init_params(0), None, None).unwrap();
    let p = tmp.path().join("huge.safetensors");
    std::fs::write(&p, with_meta(&good, "gpu_cnn.input", "1x100000x100000")).unwrap();
    fails_with(&mut infer_with(&p), &["huge.safetensors", "gpu_cnn.input", "1x100000x100000", "1..=4096"]);
    // Item 25: a 10 MB metadata string is not echoed whole.
    let p = tmp.path().join("long.safetensors");
    std::fs::write(&p, with_meta(&good, "gpu_cnn.arch", &"c".repeat(10 << 20))).unwrap();
    let se = fails_with(&mut infer_with(&p), &["long.safetensors", "… (10485760 bytes)"]);
    assert!(se.len() < 1000, "{} bytes of error", se.len());
}

/// A seed-model training checkpoint whose position, optimizer or values are `edit`ed.
fn training_checkpoint(path: &Path, edit: impl FnOnce(&mut Position, &mut Optimizer, &mut Vec<f32>)) {
    let m = Model::tutorial();
    let mut params = m.init_params(0);
    let mut pos = Position {
        epoch: 0,
        batch_in_epoch: 3,
        global_step: 3,
        epoch_rng: 1,
        batch_size: 2,
        shuffle: true,
        schedule: Default::default(),
    };
    let mut opt = Optimizer::adam(1e-3);
    edit(&mut pos, &mut opt, &mut params);
    let state = OptimizerState { step: 3, vectors: vec![0.0; 2 * m.num_params] };
    std::fs::write(path, checkpoint::to_bytes(&m, &params, Some((&opt, &state)), Some(&pos)).unwrap()).unwrap();
}

#[test]
fn bad_training_checkpoints_are_refused_by_field() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_split(&data, "train", 28, 28, &[0, 1, 2, 3]);
    write_split(&data, "t10k", 28, 28, &[0]);
    let resume = |ck: &Path| {
        let mut c = train_on(&data, &tmp.path().join("out"), &["--steps", "5", "--resume"]);
        c.arg(ck);
        c
    };
    // Item 9: batch_size 0 panicked --resume.
    let p = tmp.path().join("batch0.safetensors");
    training_checkpoint(&p, |pos, _, _| pos.batch_size = 0);
    fails_with(&mut resume(&p), &["batch0.safetensors", "gpu_cnn.batch_size", "'0'"]);
    let p = tmp.path().join("ahead.safetensors");
    training_checkpoint(&p, |pos, _, _| pos.epoch = 7);
    fails_with(&mut resume(&p), &["ahead.safetensors", "epoch 7 batch 3 after only 3 steps"]);
    // A step of 2^64 - 1 wrapped to 0 on the next step, and the run wrote a checkpoint
    // nothing could resume.
    let p = tmp.path().join("far.safetensors");
    training_checkpoint(&p, |pos, _, _| pos.global_step = u64::MAX);
    fails_with(&mut resume(&p), &["far.safetensors", "'gpu_cnn.global_step' is 18446744073709551615", "2^53"]);
    // Item 24: a negative learning rate and NaN weights were accepted.
    let p = tmp.path().join("lr.safetensors");
    training_checkpoint(&p, |_, opt, _| *opt = Optimizer::adam(-0.5));
    fails_with(&mut resume(&p), &["lr.safetensors", "lr -0.5 must be finite and positive"]);
    let p = tmp.path().join("nan.safetensors");
    training_checkpoint(&p, |_, _, params| params[416 + 114] = f32::NAN); // conv1.0 holds 416
    fails_with(&mut resume(&p), &["nan.safetensors", "key 'conv2.0.weight' holds NaN at index 114"]);
    fails_with(&mut infer_with(&p), &["nan.safetensors", "key 'conv2.0.weight' holds NaN at index 114"]);
    // A good one resumes (the checks refuse only what is wrong).
    let p = tmp.path().join("good.safetensors");
    training_checkpoint(&p, |_, _, _| ());
    assert!(resume(&p).output().unwrap().status.success());
}

#[test]
fn huge_or_classless_arch_specs_are_refused_naming_the_layer() {
    // Item 7: these aborted or panicked, and `summary` printed wrapped shapes.
    for (spec, needles) in [
        ("c4294967296k1 relu flat fc10", &["--arch layer 1", "2^28"][..]),
        ("c1k1p9223372036854775807 relu flat fc10", &["--arch layer 1", "at most 4096"]),
        ("c1k1 flat fc1000000 fc1000000", &["layer 2 (layers.2", "2^28) parameters"]),
        // Item 22: no Linear layer was accepted, then failed with a bare wgpu error.
        ("flat", &["must end in a Linear", "Flatten"]),
        // Trained and saved, then eval needed a 50000x50000 confusion table (20 GB).
        ("pool28 flat fc50000", &["layers.2 (Linear(1, 50000)) has 50000 outputs", "at most 256", "labels are bytes"]),
    ] {
        let mut c = bin();
        c.args(["summary", "--arch", spec]);
        fails_with(&mut c, needles);
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.args(["train", "--steps", "1", "--backend", "cpu", "--arch", "flat", "--out"]).arg(tmp.path());
    fails_with(&mut c, &["must end in a Linear"]);
    // A checkpoint that says it holds such a model, refused by name before eval allocates.
    let m = Model::tutorial();
    let good = checkpoint::to_bytes(&m, &m.init_params(0), None, None).unwrap();
    let p = tmp.path().join("wide.safetensors");
    std::fs::write(&p, with_meta(&good, "gpu_cnn.arch", "pool28 flat fc50000")).unwrap();
    let mut c = bin();
    c.args(["eval", "--backend", "cpu", "--weights"]).arg(&p);
    fails_with(&mut c, &["wide.safetensors: metadata 'gpu_cnn.arch'", "has 50000 outputs", "at most 256"]);
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    assert!(std::process::Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[cfg(unix)]
#[test]
fn fifos_are_refused_not_read() {
    // Item 11: infer on a FIFO blocked forever (bin() has a timeout, so a hang fails).
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.png");
    mkfifo(&fifo);
    let mut c = bin();
    c.args(["infer", "--backend", "cpu"]).arg(&fifo);
    fails_with(&mut c, &["pipe.png", "a FIFO (named pipe), not a regular file"]);
    // In a directory too, and next to a good picture, which is still read.
    std::fs::copy("tests/images/7_black_on_white.png", tmp.path().join("7.png")).unwrap();
    let mut c = bin();
    c.args(["infer", "--backend", "cpu"]).arg(tmp.path());
    fails_with(&mut c, &["pipe.png", "FIFO", "1 of 2 inputs could not be read"]);
    fails_with(&mut infer_with(&fifo), &["pipe.png", "FIFO"]);
    let data = tmp.path().join("data");
    write_split(&data, "train", 28, 28, &[0]);
    std::fs::remove_file(data.join("train-labels-idx1-ubyte")).unwrap();
    mkfifo(&data.join("train-labels-idx1-ubyte"));
    fails_with(&mut train_on(&data, &tmp.path().join("out"), &[]), &["train-labels-idx1-ubyte", "FIFO"]);
    // A resumed run's metrics.jsonl: the resume blocked opening it.
    let data = tmp.path().join("good-data");
    write_split(&data, "train", 28, 28, &[0, 1, 2, 3]);
    write_split(&data, "t10k", 28, 28, &[0]);
    let run = tmp.path().join("run");
    assert!(train_on(&data, &run, &["--steps", "1"]).output().unwrap().status.success());
    std::fs::remove_file(run.join("metrics.jsonl")).unwrap();
    mkfifo(&run.join("metrics.jsonl"));
    let mut c = train_on(&data, &run, &["--steps", "2", "--resume"]);
    c.arg(run.join("checkpoint.safetensors")).timeout(std::time::Duration::from_secs(60));
    fails_with(&mut c, &["run/metrics.jsonl", "a FIFO (named pipe), not a regular file"]);
}

#[test]
fn one_bad_picture_does_not_stop_the_others() {
    // Item 25: one bad file aborted a whole directory.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy("tests/images/7_black_on_white.png", tmp.path().join("a7.png")).unwrap();
    std::fs::write(tmp.path().join("b-broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::copy("tests/images/3_mnist_test_18.png", tmp.path().join("c3.png")).unwrap();
    let mut c = bin();
    c.args(["infer", "--backend", "cpu"]).arg(tmp.path()).arg(tmp.path().join("missing.png"));
    let out = c.output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{se}");
    assert!(so.contains("a7.png: 7") && so.contains("c3.png: 3"), "{so}");
    for needle in ["b-broken.png", "missing.png: no such file", "2 of 4 inputs could not be read"] {
        assert!(se.contains(needle), "stderr lacks {needle}:\n{se}");
    }
}

#[cfg(unix)]
#[test]
fn json_keeps_non_utf8_file_names_exactly() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let name = b"\xff\xfe seven.png";
    let p = tmp.path().join(std::ffi::OsStr::from_bytes(name));
    std::fs::copy("tests/images/7_black_on_white.png", &p).unwrap();
    let mut c = bin();
    c.args(["infer", "--json", "--backend", "cpu"]).arg(&p).arg("tests/images/7_black_on_white.png");
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let bytes: Vec<u8> = rows[0]["file_bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
    assert_eq!(bytes, p.as_os_str().as_bytes());
    assert!(rows[0]["file"].as_str().unwrap().ends_with("\u{fffd}\u{fffd} seven.png"), "{}", rows[0]);
    assert_eq!(rows[0]["digit"], 7);
    assert!(rows[1].get("file_bytes").is_none(), "a UTF-8 name needs no bytes: {}", rows[1]);
}

// ---- The bounded mutation test ----

/// The ways a valid input is broken; `fields` are byte offsets of header fields worth
/// setting to extreme values (IDX counts, PNG sizes, …).
fn mutate(rng: &mut Rng, valid: &[u8], fields: &[usize]) -> Vec<u8> {
    let mut b = valid.to_vec();
    let at = |rng: &mut Rng, len: usize| rng.below(len.max(1) as u64) as usize;
    const EXTREMES: [u32; 8] = [0, 1, 2, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x0001_0000, 4096];
    for _ in 0..=rng.below(3) {
        match rng.below(9) {
            0 => {
                // Flip a few bits.
                for _ in 0..=rng.below(8) {
                    let i = at(rng, b.len());
                    if let Some(x) = b.get_mut(i) {
                        *x ^= 1 << rng.below(8);
                    }
                }
            }
            1 => b.truncate(at(rng, b.len())),
            2 if !fields.is_empty() => {
                // A header field (big-endian u32) set to an extreme.
                let f = fields[rng.below(fields.len() as u64) as usize];
                let v = EXTREMES[rng.below(EXTREMES.len() as u64) as usize].to_be_bytes();
                if f + 4 <= b.len() {
                    b[f..f + 4].copy_from_slice(&v);
                }
            }
            3 => {
                // Any 4 aligned bytes set to an extreme, in either byte order.
                let i = at(rng, b.len() / 4) * 4;
                let v = EXTREMES[rng.below(EXTREMES.len() as u64) as usize];
                let v = if rng.below(2) == 0 { v.to_be_bytes() } else { v.to_le_bytes() };
                if i + 4 <= b.len() {
                    b[i..i + 4].copy_from_slice(&v);
                }
            }
            4 => {
                let i = at(rng, b.len());
                let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect();
                b.splice(i.min(b.len())..i.min(b.len()), junk);
            }
            5 => {
                let (i, n) = (at(rng, b.len()), rng.below(256) as usize);
                b.drain(i.min(b.len())..(i + n).min(b.len()));
            }
            6 => {
                // Repeat a slice (lengthens chunks, duplicates members).
                let (i, n) = (at(rng, b.len()), rng.below(512) as usize);
                let piece = b[i.min(b.len())..(i + n).min(b.len())].to_vec();
                b.splice(i.min(b.len())..i.min(b.len()), piece);
            }
            7 => b = (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect(),
            _ => {
                // A run of one byte value (0, 0xff or anything).
                let (i, n) = (at(rng, b.len()), rng.below(32) as usize);
                let v = [0, 0xff, rng.next_u64() as u8][rng.below(3) as usize];
                let end = (i + n).min(b.len());
                b[i.min(end)..end].fill(v);
            }
        }
    }
    b
}

/// The outcomes of a mutation test's cases.
struct Tally {
    cases: usize,
    loaded: usize,
}

impl Tally {
    /// Run case `case`, which must not panic; an error must be non-empty, short and
    /// name `name` (the input).
    fn check<T>(&mut self, case: usize, name: &str, f: impl FnOnce() -> anyhow::Result<T>) {
        match catch_unwind(AssertUnwindSafe(f)) {
            Err(_) => panic!("case {case}: the input panicked (see the message above)"),
            Ok(Ok(_)) => self.loaded += 1,
            Ok(Err(e)) => {
                let e = format!("{e:#}");
                assert!(!e.is_empty() && e.contains(name), "case {case}: the error does not name {name}: {e}");
                assert!(e.len() < 2000, "case {case}: a {}-byte error", e.len());
            }
        }
        self.cases += 1;
    }

    /// Some mutations leave a valid input (a flipped pixel), most do not: both
    /// outcomes must have been exercised.
    fn finish(self) {
        let Tally { cases, loaded } = self;
        eprintln!("{loaded} of {cases} loaded");
        assert!(loaded > 0 && loaded < cases, "{loaded} of {cases} loaded");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn mutated_idx_files_never_panic() {
    const CASES: usize = 30_000;
    let test = Dataset::load(&bundled_mnist_dir(), Split::Test).unwrap().take(3);
    let images = idx_bytes(0x803, &[3, 28, 28], &test.images);
    let labels = idx_bytes(0x801, &[3], &test.labels);
    let (gz_images, gz_labels) = (gzip(&images), gzip(&labels));
    let mut rng = Rng::new(12);
    let mut tally = Tally { cases: 0, loaded: 0 };
    for case in 0..CASES {
        let gz = case % 2 == 1;
        let (mut im, mut lb) =
            if gz { (gz_images.clone(), gz_labels.clone()) } else { (images.clone(), labels.clone()) };
        // Half the gzipped cases mutate the file inside, then compress it: they reach the
        // header checks behind the gzip layer.
        let inner = gz && rng.below(2) == 0;
        let broken = |rng: &mut Rng, plain: &[u8], packed: &[u8], fields: &[usize]| match (gz, inner) {
            (false, _) => mutate(rng, plain, fields),
            (true, true) => gzip(&mutate(rng, plain, fields)),
            (true, false) => mutate(rng, packed, fields),
        };
        let name = if rng.below(3) == 0 {
            lb = broken(&mut rng, &labels, &gz_labels, &[4]);
            "labels.idx1"
        } else {
            im = broken(&mut rng, &images, &gz_images, &[4, 8, 12]);
            "images.idx3"
        };
        tally.check(case, name, || {
            let d = Dataset::from_idx_bytes(Path::new("images.idx3"), &im, Path::new("labels.idx1"), &lb)?;
            assert_eq!(d.images.len(), d.len() * d.rows * d.cols, "case {case}");
            assert!(!d.is_empty() && d.labels.iter().all(|&l| l <= 9), "case {case}");
            Ok(())
        });
    }
    tally.finish();
}

#[test]
fn mutated_checkpoints_never_panic() {
    const CASES: usize = 8000;
    let small = arch::parse("c2k3 relu pool2 c3k3 relu flat fc10", Shape::image(1, 28, 28)).unwrap();
    let pos = Position {
        epoch: 1,
        batch_in_epoch: 2,
        global_step: 40,
        epoch_rng: 9,
        batch_size: 8,
        shuffle: false,
        schedule: Default::default(),
    };
    let valid: Vec<Vec<u8>> = [Optimizer::adam(1e-3), Optimizer::sgd(0.1, 0.9)]
        .iter()
        .map(|opt| {
            let state = OptimizerState {
                step: 40,
                vectors: (0..opt.state_vectors() * small.num_params).map(|i| (i % 7) as f32 * 0.1).collect(),
            };
            checkpoint::to_bytes(&small, &small.init_params(1), Some((opt, &state)), Some(&pos)).unwrap()
        })
        .collect();
    // Values a metadata field may be set to: wrong types, extremes, long strings.
    let long = "9".repeat(100_000);
    let values = [
        "",
        "0",
        "-1",
        "1",
        "nan",
        "inf",
        "1e40",
        "18446744073709551616",
        "4294967296",
        "true",
        "yes",
        "1x4096x4096",
        "0x28x28",
        "1x28x28",
        "c4294967296k1 flat fc10",
        "flat",
        "adam lr=1 beta1=1 beta2=1 eps=0",
        "sgd lr=0.1",
        "gpu-cnn/1",
        &long,
    ];
    let keys = [
        "gpu_cnn.arch",
        "gpu_cnn.input",
        "gpu_cnn.optimizer",
        "gpu_cnn.optimizer_step",
        "gpu_cnn.epoch",
        "gpu_cnn.batch_in_epoch",
        "gpu_cnn.global_step",
        "gpu_cnn.epoch_rng",
        "gpu_cnn.batch_size",
        "gpu_cnn.shuffle",
        "gpu_cnn.format",
    ];
    let mut rng = Rng::new(24);
    let mut tally = Tally { cases: 0, loaded: 0 };
    for case in 0..CASES {
        let base = &valid[case % 2];
        let bytes = match rng.below(3) {
            0 => {
                let key = keys[rng.below(keys.len() as u64) as usize];
                with_meta(base, key, values[rng.below(values.len() as u64) as usize])
            }
            1 => {
                // Inside the JSON header: a number replaced by an extreme (shapes, offsets).
                let hlen = u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
                let mut b = base.clone();
                let digits: Vec<usize> = (8..8 + hlen).filter(|&i| b[i].is_ascii_digit()).collect();
                let i = digits[rng.below(digits.len() as u64) as usize];
                let extreme = ["0", "99999999999999999999", "4294967296", "18446744073709551615"];
                b.splice(i..i + 1, extreme[rng.below(4) as usize].bytes());
                let new_len = (hlen + b.len() - base.len()) as u64;
                b[..8].copy_from_slice(&new_len.to_le_bytes());
                b
            }
            _ => mutate(&mut rng, base, &[0]),
        };
        tally.check(case, "mutant.safetensors", || {
            let c = checkpoint::load_bytes(Path::new("mutant.safetensors"), &bytes, &Model::tutorial())?;
            assert_eq!(c.params.len(), c.model.num_params, "case {case}");
            assert!(c.params.iter().all(|x| x.is_finite()), "case {case}");
            Ok(())
        });
    }
    tally.finish();
}

#[test]
fn mutated_pictures_never_panic() {
    const CASES: usize = 20_000;
    let digit = image::open("tests/images/3_mnist_test_18.png").unwrap();
    let formats = [
        (image::ImageFormat::Png, "png", vec![16, 20]),
        (image::ImageFormat::Jpeg, "jpg", vec![]),
        (image::ImageFormat::Gif, "gif", vec![6]),
        (image::ImageFormat::Bmp, "bmp", vec![18, 22]),
        (image::ImageFormat::Tiff, "tiff", vec![]),
        (image::ImageFormat::WebP, "webp", vec![]),
    ];
    let valid: Vec<Vec<u8>> = formats
        .iter()
        .map(|(f, _, _)| {
            let mut v = Vec::new();
            let img: image::DynamicImage =
                if *f == image::ImageFormat::Jpeg { digit.to_rgb8().into() } else { digit.to_rgba8().into() };
            img.write_to(&mut std::io::Cursor::new(&mut v), *f).unwrap();
            v
        })
        .collect();
    let mut rng = Rng::new(36);
    let mut tally = Tally { cases: 0, loaded: 0 };
    for case in 0..CASES {
        let k = case % formats.len();
        let bytes = mutate(&mut rng, &valid[k], &formats[k].2);
        let name = format!("mutant.{}", formats[k].1);
        tally.check(case, &name, || {
            let d = preprocess::load_digit_bytes(Path::new(&name), &bytes)?;
            assert!(d.iter().all(|x| (0.0..=1.0).contains(x)), "case {case}");
            Ok(())
        });
    }
    tally.finish();
}

#[test]
fn mutated_arch_specs_never_panic() {
    const CASES: usize = 40_000;
    let tokens = [
        "c16k5",
        "c0k1",
        "c4294967296k1",
        "c1k1p9223372036854775807",
        "c8k3s2p1",
        "c8k3p4096",
        "c3k4097",
        "relu",
        "pool2",
        "pool2s2",
        "pool0",
        "pool1s18446744073709551615",
        "flat",
        "flatten",
        "fc10",
        "fc0",
        "fc268435457",
        "c",
        "k5",
        "c16k",
        "cKk5",
        "c16k5k3",
        "pools2",
        "fc",
        "fc99999999999999999999",
        "c8k3,",
        ",",
        "",
    ];
    // Mostly small numbers, sometimes the edges of every bound and of usize.
    let numbers =
        ["1", "2", "3", "5", "8", "16", "0", "4096", "4097", "268435456", "4294967296", "18446744073709551615"];
    let num = |rng: &mut Rng| {
        let range = if rng.below(4) == 0 { numbers.len() } else { 6 };
        numbers[rng.below(range as u64) as usize]
    };
    let mut rng = Rng::new(48);
    let mut tally = Tally { cases: 0, loaded: 0 };
    for case in 0..CASES {
        let mut spec = if case % 3 == 0 {
            // Token salad.
            (0..=rng.below(12)).map(|_| tokens[rng.below(tokens.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
        } else {
            // The shape of a real model (layers, then flat and a classifier), numbers drawn.
            let mut layers: Vec<String> = (0..rng.below(5))
                .map(|_| match rng.below(4) {
                    0 => format!("c{}k{}s{}p{}", num(&mut rng), num(&mut rng), num(&mut rng), num(&mut rng)),
                    1 => format!("c{}k{}", num(&mut rng), num(&mut rng)),
                    2 => format!("pool{}s{}", num(&mut rng), num(&mut rng)),
                    _ => "relu".to_string(),
                })
                .collect();
            layers.extend(["flat".to_string(), format!("fc{}", num(&mut rng))]);
            layers.join(" ")
        };
        if rng.below(3) == 0 {
            spec = String::from_utf8_lossy(&mutate(&mut rng, spec.as_bytes(), &[])).into_owned();
        }
        let input = [Shape::image(1, 28, 28), Shape::image(3, 4096, 1), Shape::image(1, 1, 1)][case % 3];
        tally.check(case, "--arch", || {
            let m = arch::parse(&spec, input)?;
            // What summary prints must be what the model holds, not wrapped numbers.
            assert!(m.num_params <= gpu_cnn::model::MAX_ELEMENTS && m.flops_per_sample() < u64::MAX, "case {case}");
            Ok(())
        });
    }
    tally.finish();
}
