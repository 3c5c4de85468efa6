//! The pictures and the machine-readable eval: `gpu-cnn plot` compares real runs and
//! names every bad input without panicking, degenerate histories still draw, and
//! `eval --json` is consistent with itself.

use std::path::Path;

use gpu_cnn::plot;

fn gpu_cnn(args: &[&str], paths: &[&Path]) -> Outcome {
    common::outcome(common::bin().args(args).args(paths))
}

mod common;

use common::{small_test_set, train, Outcome};

/// A run directory holding only this metrics.jsonl text.
fn fake_run(dir: &Path, metrics: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
}

fn train_line(step: u64, loss: f64, accuracy: f64) -> String {
    format!(
        "{{\"step\":{step},\"epoch\":1,\"loss\":{loss},\"accuracy\":{accuracy},\"samples_per_s\":1000.0,\"lr\":0.001}}\n"
    )
}

fn test_line(step: u64, loss: f64, accuracy: f64) -> String {
    format!("{{\"step\":{step},\"epoch\":1,\"test_loss\":{loss},\"test_accuracy\":{accuracy}}}\n")
}

/// The comparison picture: 1100 wide, two 420-high panels under a legend of one row
/// per run plus the line-style key.
fn comparison_size(runs: u32) -> (u32, u32) {
    (1100, 420 + 16 + 22 * (runs + 1))
}

fn size_of(png: &Path) -> (u32, u32) {
    image::image_dimensions(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()))
}

#[test]
fn plot_compares_two_real_runs_and_names_them_with_their_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let (seed, small) = (tmp.path().join("seed-run"), tmp.path().join("small-run"));
    train(&seed, 6, &[]);
    train(&small, 4, &["--arch", "c8k3 relu pool2 flat fc10"]);
    let png = tmp.path().join("compare.png");
    let out = gpu_cnn(&["plot"], &[&seed, &small, Path::new("-o"), &png]).ok();
    assert_eq!(size_of(&png), comparison_size(2));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("run") && lines[0].contains("best test accuracy"), "{}", out.stdout);
    // Each run's row: its name, its architecture from the weights, its last step.
    let row = |name: &str| *lines.iter().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(row("seed-run").contains("c16k5") && row("seed-run").contains(" 6 "), "{}", out.stdout);
    assert!(row("small-run").contains("c8k3") && row("small-run").contains(" 4 "), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("wrote {}", png.display())), "{}", out.stdout);
}

#[test]
fn plot_draws_what_each_run_has_and_warns_about_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    // a: training and test points, a malformed line 2 and a truncated last line.
    let text = train_line(2, 2.3, 0.1) + "{\"step\": 4, oops\n" + &train_line(4, 2.0, 0.2) + &test_line(4, 1.9, 0.3);
    fake_run(&a, &format!("{text}{{\"step\":6,\"epo"));
    // b: training points only; c: an empty file, left out with a warning.
    fake_run(&b, &(train_line(2, 2.2, 0.1) + &train_line(4, 2.1, 0.15)));
    fake_run(&c, "");
    let png = tmp.path().join("mixed.png");
    let out = gpu_cnn(&["plot", "-o"], &[&png, &a, &b, &c]).ok();
    assert_eq!(size_of(&png), comparison_size(2));
    let metrics = a.join("metrics.jsonl").display().to_string();
    assert!(out.stderr.contains(&format!("{metrics}:2: not JSON")), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("{metrics}:5: truncated last line")), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("{}: no metrics", c.join("metrics.jsonl").display())), "{}", out.stderr);
    assert!(out.stdout.contains("30.00%"), "a's best test accuracy:\n{}", out.stdout);
    // No weights in a fake run: the name alone, and "-" where the arch would be.
    let row_b = out.stdout.lines().find(|l| l.contains("/b ")).unwrap();
    assert!(row_b.contains(" - ") && row_b.trim_end().ends_with('-'), "{}", out.stdout);
}

#[test]
fn plot_names_every_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let png = p("out.png");
    gpu_cnn(&["plot", "-o"], &[&png, &p("nowhere")]).fails_with(&["nowhere", "no such run directory"]);
    std::fs::create_dir(p("bare")).unwrap();
    gpu_cnn(&["plot", "-o"], &[&png, &p("bare")]).fails_with(&["bare/metrics.jsonl", "no such file"]);
    std::fs::write(p("a-file"), "").unwrap();
    gpu_cnn(&["plot", "-o"], &[&png, &p("a-file")]).fails_with(&["a-file", "not a directory"]);
    fake_run(&p("empty"), "\n");
    gpu_cnn(&["plot", "-o"], &[&png, &p("empty")]).fails_with(&["nothing to draw", "empty/metrics.jsonl"]);
    fake_run(&p("garbage"), "this is not json\n{\"step\":1}\n");
    gpu_cnn(&["plot", "-o"], &[&png, &p("garbage")]).fails_with(&["garbage/metrics.jsonl:1", "nothing to draw"]);
    assert!(!png.exists(), "a failed plot left a picture");

    fake_run(&p("good"), &train_line(2, 2.3, 0.1));
    let unwritable = p("a-file").join("out.png");
    gpu_cnn(&["plot", "-o"], &[&unwritable, &p("good")]).fails_with(&["a-file/out.png", "no such directory"]);
    gpu_cnn(&["plot", "-o"], &[&p("out.txt"), &p("good")]).fails_with(&["out.txt", "unknown picture format"]);
    // Formats the image crate knows but this build cannot encode.
    for name in ["out.tga", "out.qoi", "out.exr", "out.ico"] {
        gpu_cnn(&["plot", "-o"], &[&p(name), &p("good")]).fails_with(&[name, "cannot write", ".png"]);
    }
    gpu_cnn(&["plot", "-o"], &[&p("bare"), &p("good")]).fails_with(&["-o", "bare: is a directory"]);
    // Asked before the test set is evaluated.
    let eval =
        gpu_cnn(&["eval", "--backend", "cpu", "--plot"], &[&p("bare")]).fails_with(&["--plot", "is a directory"]);
    assert!(!eval.stdout.contains("accuracy"), "the evaluation ran first:\n{}", eval.stdout);
    let eval = gpu_cnn(&["eval", "--backend", "cpu", "--plot"], &[&p("m.tga")]).fails_with(&["--plot", "m.tga"]);
    assert!(!eval.stdout.contains("accuracy"), "the evaluation ran first:\n{}", eval.stdout);
}

#[test]
fn degenerate_histories_draw_sensibly() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    const BLUE: [u8; 3] = [31, 119, 180];
    // Blue (the training colour) below the legend strip: the curve or its marker.
    let blue_in_panels = |png: &Path| {
        let img = image::open(png).unwrap().to_rgb8();
        img.enumerate_pixels().filter(|(_, y, px)| *y > 60 && px.0 == BLUE).count()
    };
    type History = Vec<(u64, f64, f64)>;
    // ln 10: the loss of a model that still guesses uniformly among ten digits.
    let chance = std::f64::consts::LN_10;
    let cases: [(&str, History, History); 4] = [
        ("one-point", vec![(6, 2.3, 0.125)], vec![]),
        ("constant", (1..=20).map(|s| (s, chance, 0.1)).collect(), vec![(20, chance, 0.1)]),
        ("two-steps", vec![(10, 1.0, 0.5), (11, 0.9, 0.5)], vec![]),
        ("perfect", vec![(5, 0.0, 1.0), (10, 0.0, 1.0)], vec![(10, 0.0, 1.0)]),
    ];
    for (name, train, test) in &cases {
        let png = p(&format!("{name}.png"));
        plot::training_curves(train, test, &png).unwrap();
        assert_eq!(size_of(&png), (1100, 458), "{name}");
        assert!(blue_in_panels(&png) > 0, "{name}: no training curve drawn");
    }
    let empty = p("empty.png");
    plot::training_curves(&[], &[], &empty).unwrap();
    assert_eq!(blue_in_panels(&empty), 0, "a curve drawn from no points");

    // The same through `gpu-cnn plot`: a run with one logged point.
    fake_run(&p("one"), &train_line(2, 2.3, 0.1));
    gpu_cnn(&["plot", "-o"], &[&p("one.png"), &p("one")]).ok();
    assert_eq!(size_of(&p("one.png")), comparison_size(1));
}

#[test]
fn plot_finishes_on_values_and_steps_no_run_reaches() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    // Losses 0 and 1.79e308 padded the axis to infinity, and plot never returned; a
    // step of u64::MAX wrapped the axis around.
    let cases = [
        ("huge-loss", train_line(1, 0.0, 0.5) + &train_line(2, 1.79e308, 0.5)),
        ("huge-both-ways", train_line(1, -1e308, 0.5) + &train_line(2, 1e308, 0.5)),
        ("last-step", train_line(u64::MAX - 1, 1.0, 0.5) + &train_line(u64::MAX, 2.0, 0.5)),
        ("far-steps", train_line(1, 1.0, 0.5) + &train_line(u64::MAX, 2.0, 0.5)),
    ];
    for (name, metrics) in &cases {
        fake_run(&p(name), metrics);
        let png = p(&format!("{name}.png"));
        let mut c = common::bin();
        c.timeout(std::time::Duration::from_secs(60)).arg("plot").arg("-o").arg(&png).arg(p(name));
        common::outcome(&mut c).ok();
        assert_eq!(size_of(&png), comparison_size(1), "{name}");
    }
}

#[test]
fn confusion_matrix_pictures_refuse_a_ragged_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("m.png");
    // Class 2 has no test images at all: drawn grey, not an error.
    plot::confusion(&[vec![5, 1, 0], vec![2, 7, 0], vec![0, 0, 0]], &png).unwrap();
    assert!(size_of(&png).0 > 200);
    let e = plot::confusion(&[vec![1, 2], vec![3]], &png).unwrap_err();
    assert!(format!("{e:#}").contains("row 1 has 1 columns, expected 2"), "{e:#}");
}

/// A small MNIST-format test split: the first `n` bundled test images.
#[test]
fn eval_json_is_consistent_with_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("small");
    small_test_set(&data, 100);
    let png = tmp.path().join("confusion.png");
    let out = gpu_cnn(&["eval", "--backend", "cpu", "--json", "--data"], &[&data, Path::new("--plot"), &png]).ok();
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", out.stdout));
    assert_eq!(j["images"], 100);
    assert!(j["weights"].as_str().unwrap().ends_with("mnist-cnn.safetensors"), "{j}");
    assert!(j["backend"].as_str().unwrap().to_lowercase().contains("cpu"), "{j}");
    let accuracy = j["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9 && j["loss"].as_f64().unwrap() > 0.0, "the shipped weights read digits: {j}");
    let m: Vec<Vec<u64>> = serde_json::from_value(j["confusion"].clone()).unwrap();
    let per_class = j["per_class"].as_array().unwrap();
    assert_eq!((m.len(), per_class.len()), (10, 10));
    let total: u64 = m.iter().flatten().sum();
    let trace: u64 = (0..10).map(|i| m[i][i]).sum();
    assert_eq!(total, 100);
    assert!((trace as f64 / total as f64 - accuracy).abs() < 1e-12, "trace {trace} vs accuracy {accuracy}");
    let mut images = 0;
    for (c, row) in per_class.iter().enumerate() {
        let n = row["images"].as_u64().unwrap();
        assert_eq!(row["class"], c);
        assert_eq!(n, m[c].iter().sum::<u64>(), "class {c}");
        assert_eq!(row["correct"], m[c][c], "class {c}");
        if n > 0 {
            assert!((row["accuracy"].as_f64().unwrap() - m[c][c] as f64 / n as f64).abs() < 1e-12);
        } else {
            assert!(row["accuracy"].is_null());
        }
        images += n;
    }
    assert_eq!(images, 100);
    image::open(&png).unwrap();
}
