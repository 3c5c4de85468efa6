//! `gpu-cnn explain`, run as a user runs it: a sheet and the JSON numbers for every
//! shipped picture that agree with `infer`, the GPU's saliency equal to the CPU
//! reference's, `--arch` models with several convolutions and with none, and every
//! bad input reported by name without a panic, the good pictures still explained.

mod common;

use common::{backend, bin, fails_with, stdout_of};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tutorial model's sheet, as docs/explain.md documents it.
const SHEET: (u32, u32) = (1200, 1945);

fn shipped_pictures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir("tests/images").unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    files
}

/// `explain --json` of `pictures` (files or directories) into `out`; returns stdout.
fn explain(out: &Path, backend: &str, extra: &[&str], pictures: &[PathBuf]) -> String {
    stdout_of(bin().args(["explain", "--json", "--backend", backend]).args(extra).arg("--out").arg(out).args(pictures))
}

fn stem(picture: &Path) -> String {
    picture.file_stem().unwrap().to_string_lossy().into_owned()
}

fn sheet_size(out: &Path, picture: &Path) -> (u32, u32) {
    let png = out.join(format!("{}.explain.png", stem(picture)));
    let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert_eq!(image::ImageFormat::from_path(&png).unwrap(), image::ImageFormat::Png);
    (img.width(), img.height())
}

fn numbers(of: &Value) -> Vec<f64> {
    of.as_array().unwrap_or_else(|| panic!("not an array: {of}")).iter().map(|v| v.as_f64().unwrap()).collect()
}

fn shape(of: &Value) -> Vec<usize> {
    numbers(of).iter().map(|&d| d as usize).collect()
}

/// The JSON written for `picture`, with its common keys checked: the probabilities
/// sum to 1, the prediction is the most probable class, the input and the saliency
/// are 1x28x28, and each map holds as many values as its shape says.
fn json_of(out: &Path, picture: &Path) -> Value {
    let path = out.join(format!("{}.explain.json", stem(picture)));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let j: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(j["file"], picture.display().to_string());
    let probs = numbers(&j["probabilities"]);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{probs:?}");
    let best = probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(j["prediction"], best, "{probs:?}");
    for key in ["input", "saliency"] {
        assert_eq!(shape(&j[key]["shape"]), [1, 28, 28], "{key}");
        assert_eq!(numbers(&j[key]["values"]).len(), 784, "{key}");
    }
    for m in j["maps"].as_array().unwrap() {
        let n: usize = shape(&m["shape"]).iter().product();
        assert_eq!(numbers(&m["values"]).len(), n, "{}", m["layer"]);
    }
    j
}

/// The maps' (layer, shape), in order.
fn layers(j: &Value) -> Vec<(String, Vec<usize>)> {
    j["maps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["layer"].as_str().unwrap().to_string(), shape(&m["shape"])))
        .collect()
}

fn train(out: &Path, arch: &str) {
    common::train(out, 2, &["--arch", arch]);
}

#[test]
fn every_shipped_picture_gets_a_sheet_and_numbers_that_agree_with_infer() {
    let tmp = tempfile::tempdir().unwrap();
    let pictures = shipped_pictures();
    // The directory, as a user names it: every picture in it gets a sheet.
    let run = explain(tmp.path(), backend(), &[], &[PathBuf::from("tests/images")]);
    let infer = stdout_of(bin().args(["infer", "--json", "--backend", backend(), "tests/images"]));
    let digits: HashMap<String, u64> = infer
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|j| (j["file"].as_str().unwrap().to_string(), j["digit"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(String, Vec<usize>)> = [
        ("conv1.0", vec![16, 28, 28]),
        ("conv1.2", vec![16, 14, 14]),
        ("conv2.0", vec![32, 14, 14]),
        ("conv2.2", vec![32, 14, 14]),
        ("conv2.4", vec![32, 7, 7]),
        ("conv3.0", vec![64, 7, 7]),
        ("out", vec![10]),
    ]
    .into_iter()
    .map(|(l, s)| (l.to_string(), s))
    .collect();
    for p in &pictures {
        assert_eq!(sheet_size(tmp.path(), p), SHEET, "{}", p.display());
        let j = json_of(tmp.path(), p);
        assert_eq!(layers(&j), expected, "{}", p.display());
        // The digit in the file name, as infer reads it.
        assert_eq!(j["prediction"].as_u64(), digits.get(&p.display().to_string()).copied(), "{}", p.display());
        assert_eq!(j["filters"]["param"], "conv1.0.weight");
        assert_eq!(shape(&j["filters"]["shape"]), [16, 1, 5, 5]);
        assert_eq!(numbers(&j["filters"]["values"]).len(), 400);
        assert!(run.contains(&format!("{}: {}", p.display(), j["prediction"])), "{run}");
    }
    // The ReLU is part of each convolution's map: none of those values is negative.
    let j = json_of(tmp.path(), &pictures[0]);
    assert!(j["maps"][0]["values"].as_array().unwrap().iter().all(|v| v.as_f64().unwrap() >= 0.0));
}

#[test]
fn the_saliency_on_the_gpu_equals_the_cpu_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let pictures: Vec<PathBuf> =
        ["tests/images/3_mnist_test_18.png", "tests/images/7_black_on_white.png"].iter().map(PathBuf::from).collect();
    let (gpu, cpu) = (tmp.path().join("gpu"), tmp.path().join("cpu"));
    explain(&gpu, backend(), &[], &pictures);
    explain(&cpu, "cpu", &[], &pictures);
    for p in &pictures {
        let (g, c) = (json_of(&gpu, p), json_of(&cpu, p));
        assert_eq!(c["backend"], "cpu reference");
        assert!(g["backend"].as_str().unwrap().contains("GEMM engine"), "{}", g["backend"]);
        assert_eq!(g["prediction"], c["prediction"], "{}", p.display());
        let (gs, cs) = (numbers(&g["saliency"]["values"]), numbers(&c["saliency"]["values"]));
        let peak = cs.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(peak > 1e-3, "{}: a saliency map of zeros checks nothing", p.display());
        for (i, (a, b)) in gs.iter().zip(&cs).enumerate() {
            assert!((a - b).abs() <= 1e-6 + 1e-3 * b.abs(), "{} pixel {i}: gpu {a} cpu {b}", p.display());
        }
    }
}

#[test]
fn a_model_with_several_convolutions_gets_a_section_for_each() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("run");
    // A ReLU of its own after a fused one, and a strided unpadded convolution.
    let arch = "c4k3 relu c6k3 relu pool2 c8k3s2p0 relu relu flat fc10";
    train(&weights, arch);
    let flat = tmp.path().join("flat-run");
    train(&flat, "flat fc10");
    let picture = [PathBuf::from("tests/images/5_mnist_test_8.png")];
    let (out, flat_out) = (tmp.path().join("sheets"), tmp.path().join("flat-sheets"));
    let w = weights.join("model.safetensors");
    explain(&out, backend(), &["--arch", arch, "--weights", w.to_str().unwrap()], &picture);
    let w = flat.join("model.safetensors");
    explain(&flat_out, backend(), &["--weights", w.to_str().unwrap()], &picture);

    let j = json_of(&out, &picture[0]);
    let expected = [
        ("layers.0", vec![4, 28, 28]),
        ("layers.2", vec![6, 28, 28]),
        ("layers.4", vec![6, 14, 14]),
        ("layers.5", vec![8, 6, 6]),
        ("layers.7", vec![8, 6, 6]),
        ("layers.9", vec![10]),
    ];
    assert_eq!(layers(&j), expected.map(|(l, s)| (l.to_string(), s)));
    assert_eq!(j["filters"]["param"], "layers.0.weight");
    assert_eq!(shape(&j["filters"]["shape"]), [4, 1, 3, 3]);

    // Without convolutions: the logits are the only map, and the "filters" are the
    // Linear's weights, one 784-long row per class.
    let f = json_of(&flat_out, &picture[0]);
    assert_eq!(layers(&f), [("layers.1".to_string(), vec![10])]);
    assert_eq!(f["filters"]["param"], "layers.1.weight");
    assert_eq!(shape(&f["filters"]["shape"]), [10, 784]);
    assert_eq!(numbers(&f["filters"]["values"]).len(), 7840);

    // The sheet grows with the sections it draws.
    let (sheets, flat_sheet) = (sheet_size(&out, &picture[0]), sheet_size(&flat_out, &picture[0]));
    assert_eq!((sheets.0, flat_sheet.0), (SHEET.0, SHEET.0));
    assert!(sheets.1 > flat_sheet.1 + 300, "{sheets:?} vs {flat_sheet:?}");
}

#[test]
fn bad_pictures_are_reported_and_the_good_ones_still_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    std::fs::write(p("notes.txt"), b"this is not a picture").unwrap();
    image::GrayImage::from_pixel(40, 40, image::Luma([255])).save(p("blank.png")).unwrap();
    std::fs::create_dir(p("folder")).unwrap();
    let good = Path::new("tests/images/7_black_on_white.png");
    let out = p("sheets");
    let explain = || {
        let mut c = bin();
        c.args(["explain", "--backend", backend(), "--out"]).arg(&out);
        c
    };
    let pictures = [p("missing.png"), good.into(), p("notes.txt"), p("blank.png"), p("folder")];
    fails_with(
        explain().args(pictures),
        &[
            "missing.png: no such file",
            "notes.txt",
            "not an image",
            "blank.png",
            "blank",
            "folder: no image files in this directory",
            "4 of 5 pictures could not be read",
        ],
    );
    assert_eq!(sheet_size(&out, good), SHEET);
    let written: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(written, ["7_black_on_white.explain.png"], "only the good picture has a sheet");

    // Nothing readable: exit 1 all the same.
    fails_with(explain().arg(p("notes.txt")), &["notes.txt", "no sheet drawn: 1 of 1 pictures"]);
}

#[test]
fn an_unusable_out_or_weights_stops_before_drawing() {
    let tmp = tempfile::tempdir().unwrap();
    let good = Path::new("tests/images/7_black_on_white.png");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let explain = |extra: &[&str], out: &Path, needles: &[&str]| {
        fails_with(bin().args(["explain", "--backend", backend()]).args(extra).arg("--out").arg(out).arg(good), needles)
    };
    explain(&[], &file, &["a-file", "cannot create the directory"]);
    explain(&[], &file.join("below"), &["a-file/below", "cannot create the directory"]);

    let out = tmp.path().join("sheets");
    let text = tmp.path().join("text.safetensors");
    std::fs::write(&text, b"not safetensors at all").unwrap();
    explain(&["--weights", text.to_str().unwrap()], &out, &["text.safetensors", "not a safetensors file"]);
    let absent = tmp.path().join("absent.safetensors");
    explain(&["--weights", absent.to_str().unwrap()], &out, &["absent.safetensors"]);
    explain(&["--arch", "c4k3 banana"], &out, &["banana"]);
    assert!(!out.exists(), "nothing is written when the weights are unusable");
}

#[test]
fn explain_never_writes_over_one_of_its_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pictures");
    std::fs::create_dir(&dir).unwrap();
    // a.png's sheet goes to a.explain.png and its numbers to a.explain.json: here two
    // of the user's pictures.
    std::fs::copy("tests/images/7_black_on_white.png", dir.join("a.png")).unwrap();
    std::fs::copy("tests/images/3_mnist_test_18.png", dir.join("a.explain.png")).unwrap();
    std::fs::copy("tests/images/3_mnist_test_18.png", dir.join("a.explain.json")).unwrap();
    let before = common::snapshot(&dir);
    let explain = |extra: &[&str], over: &str| {
        let mut c = bin();
        c.args(["explain", "--backend", "cpu"]).args(extra).arg("--out").arg(&dir).arg(dir.join("a.png"));
        fails_with(c.arg(dir.join(over)), &[&format!("{over}: --out would write over the input"), "another directory"]);
    };
    explain(&[], "a.explain.png");
    explain(&["--json"], "a.explain.json");
    assert!(common::snapshot(&dir) == before, "a file was written");
}
