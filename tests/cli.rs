//! The `gpu-cnn` binary, run for real on the bundled data: training writes its
//! files, resume is exact, infer/eval/summary/devices work, and every bad input
//! gets a clear error and a non-zero exit, never a panic.

use safetensors::tensor::{Dtype, TensorView};
use std::path::{Path, PathBuf};

use gpu_cnn::checkpoint;
use gpu_cnn::model::Model;

mod common;

use common::{backend, bin, exits_with, fails_with, outcome, small_test_set, stdout_of, train};

#[test]
fn train_writes_checkpoint_metrics_and_plot_and_resume_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let out = train(&a, 6, &[]);
    assert!(out.contains("step 6"), "{out}");
    // Six steps end inside the first epoch, before its test evaluation: the line says how
    // to get one, on the run's device.
    let mut eval = format!("eval --weights {}", a.join("model.safetensors").display());
    if backend() != "auto" {
        eval += &format!(" --backend {}", backend());
    }
    assert!(out.contains("ended inside epoch 1") && out.contains(&eval), "{out}");
    for f in ["checkpoint.safetensors", "model.safetensors", "metrics.jsonl", "curves.png"] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for k in ["step", "epoch", "loss", "accuracy", "samples_per_s", "lr"] {
        assert!(lines[2].get(k).is_some(), "metrics lack {k}: {}", lines[2]);
    }
    assert_eq!(lines[2]["step"], 6);
    image::open(a.join("curves.png")).unwrap();

    // 3 steps, then resume to 6: the same weights as 6 uninterrupted steps.
    train(&b, 3, &[]);
    let ck = checkpoint::load(&b.join("checkpoint.safetensors"), &Model::tutorial()).unwrap();
    assert_eq!(ck.position.unwrap().global_step, 3);
    let mut c = bin();
    c.args(["train", "--steps", "6", "--log-every", "2", "--backend", backend(), "--resume"])
        .arg(b.join("checkpoint.safetensors"))
        .arg("--out")
        .arg(&b);
    let out = stdout_of(&mut c);
    assert!(out.contains("step 6"), "{out}");
    let (wa, wb) = (
        checkpoint::load(&a.join("model.safetensors"), &Model::tutorial()).unwrap(),
        checkpoint::load(&b.join("model.safetensors"), &Model::tutorial()).unwrap(),
    );
    assert_eq!(wa.params, wb.params, "resumed run differs from the uninterrupted one");
    let resumed = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    assert!(resumed.lines().count() == 3 || resumed.lines().count() == 4, "{resumed}");

    // --init starts from the weights with a fresh optimizer.
    let c_dir = tmp.path().join("c");
    train(&c_dir, 1, &["--init", a.join("model.safetensors").to_str().unwrap()]);

    // eval on a small test split, with the confusion matrix plot.
    let data = tmp.path().join("small");
    small_test_set(&data, 50);
    let plot = tmp.path().join("confusion.png");
    let mut c = bin();
    c.args(["eval", "--backend", backend(), "--weights"])
        .arg(a.join("model.safetensors"))
        .arg("--data")
        .arg(&data)
        .arg("--plot")
        .arg(&plot);
    let out = stdout_of(&mut c);
    assert!(out.contains("accuracy") && out.contains("confusion matrix") && out.contains("50 test images"), "{out}");
    image::open(&plot).unwrap();
}

#[test]
fn a_schedule_and_weight_decay_are_applied_logged_and_kept_for_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.args(["train", "--steps", "6", "--batch-size", "8", "--log-every", "1", "--backend", backend()])
        .args(["--schedule", "cosine", "--warmup", "2", "--weight-decay", "0.01", "--out"])
        .arg(tmp.path());
    let out = stdout_of(&mut c);
    // (After the software-driver note, which `auto` prints first on a machine without a GPU.)
    let training = out.lines().find(|l| l.starts_with("training ")).unwrap_or_default();
    assert!(training.contains("schedule cosine warmup=2 total=6"), "{out}");
    // 60,000 images in steps of 8: the run's 6 steps are the schedule's whole length.
    let schedule = gpu_cnn::schedule::Schedule::from_spec("cosine", 2, 6, 7500).unwrap();
    let metrics = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    let rates: Vec<(u64, f64)> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|j| Some((j["step"].as_u64()?, j.get("lr")?.as_f64()?)))
        .collect();
    let want: Vec<(u64, f64)> = (0..6).map(|t| (t + 1, schedule.at(t, 1e-3f32 as f64).lr as f32 as f64)).collect();
    assert_eq!(rates, want, "{metrics}");
    let ck = checkpoint::load(&tmp.path().join("checkpoint.safetensors"), &Model::tutorial()).unwrap();
    assert_eq!(ck.position.unwrap().schedule, schedule);
    assert_eq!(ck.optimizer.unwrap().0, gpu_cnn::executor::Optimizer::adam(1e-3).with_weight_decay(0.01));

    // A resumed run keeps its schedule: a new one on the command line is refused.
    let mut c = bin();
    c.args(["train", "--steps", "8", "--backend", backend(), "--schedule", "step", "--resume"])
        .arg(tmp.path().join("checkpoint.safetensors"))
        .arg("--out")
        .arg(tmp.path());
    exits_with(&mut c, 2, &["--schedule", "--resume"]);
    // Nor can it outgrow the run that laid the cosine out: past step 6 the rate would stay 0.
    for (flags, asked) in [(&["--steps", "8"][..], "--steps 8"), (&["--epochs", "2"][..], "--epochs 2 (15000 steps)")] {
        let mut c = bin();
        c.args(["train", "--backend", backend()]).args(flags).arg("--resume");
        c.arg(tmp.path().join("checkpoint.safetensors")).arg("--out").arg(tmp.path());
        let err =
            fails_with(&mut c, &["cosine schedule spans the 6 steps", &format!("{asked} would run past its end")]);
        assert!(err.contains("at most 6 steps") && err.contains("--init"), "{err}");
    }
    let mut c = bin();
    c.args(["train", "--steps", "2", "--backend", backend(), "--schedule", "cosine", "--warmup", "2", "--out"])
        .arg(tmp.path().join("short"));
    fails_with(&mut c, &["--schedule/--warmup", "a warmup of 2 steps leaves nothing of a 2-step run"]);

    // Whole epochs of a small split: StepLR halving every 2 steps, and each epoch's
    // line timed from the process start (time to accuracy, evaluation included).
    let data = tmp.path().join("small");
    let train_split = gpu_cnn::data::Dataset::load(&gpu_cnn::data::bundled_mnist_dir(), gpu_cnn::data::Split::Train)
        .unwrap()
        .take(48);
    common::write_split(&data, "train", 28, 28, &train_split.images, &train_split.labels);
    small_test_set(&data, 20);
    let mut c = bin();
    c.args(["train", "--epochs", "2", "--batch-size", "16", "--log-every", "1", "--backend", backend()])
        .args(["--schedule", "step:2:0.5", "--lr", "0.004", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("epochs"));
    let out = stdout_of(&mut c);
    let epochs: Vec<&str> = out.lines().filter(|l| l.starts_with("epoch ") && l.contains("test accuracy")).collect();
    assert_eq!(epochs.len(), 2, "{out}");
    assert!(epochs.iter().all(|l| l.ends_with(" s since start)")), "{out}");
    let metrics = std::fs::read_to_string(tmp.path().join("epochs").join("metrics.jsonl")).unwrap();
    let rates: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap().get("lr")?.as_f64())
        .collect();
    let want = [0.004, 0.004, 0.002, 0.002, 0.001, 0.001].map(|r: f64| r as f32 as f64);
    assert_eq!(rates, want, "{metrics}");
}

/// Without a GPU, `auto` lands on a software driver; `train` says so on its first line,
/// and on GL names the package of the faster Vulkan one. Asked for by name, no note.
#[test]
fn a_software_adapter_is_named_on_the_first_line() {
    if !common::in_ci() {
        eprintln!("SKIPPED: which adapter `auto` finds is only known on the CI machine (lavapipe and llvmpipe)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let first_line = |backend: &str, hide_vulkan: bool| {
        let mut c = bin();
        c.args(["train", "--steps", "1", "--batch-size", "8", "--backend", backend, "--overwrite", "--out"]);
        c.arg(tmp.path());
        if hide_vulkan {
            // As on a machine without Vulkan: wgpu then falls back to GL by itself.
            c.env("VK_ICD_FILENAMES", tmp.path().join("no-such-icd.json"));
        }
        stdout_of(&mut c).lines().next().unwrap().to_string()
    };
    let lavapipe = first_line("auto", false);
    assert!(lavapipe.starts_with("note: no GPU found") && lavapipe.contains("lavapipe"), "{lavapipe}");
    let gl = first_line("auto", true);
    assert!(
        gl.contains("software OpenGL") && gl.contains("x slower than") && gl.contains("mesa-vulkan-drivers"),
        "{gl}"
    );
    let asked = first_line("vulkan", false);
    assert!(asked.starts_with("training "), "{asked}");
}

#[test]
fn arch_models_train_and_reload_without_repeating_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = "c4k3 relu pool2 c8k3 relu pool2 flat fc10";
    let out = train(tmp.path(), 2, &["--arch", spec]);
    assert!(out.contains("step 2"), "{out}");
    let ck = checkpoint::load(&tmp.path().join("model.safetensors"), &Model::tutorial()).unwrap();
    assert_eq!(ck.model.params[0].name, "layers.0.weight");
    let mut c = bin();
    c.args(["infer", "tests/images/7_black_on_white.png", "--backend", backend(), "--weights"])
        .arg(tmp.path().join("model.safetensors"));
    stdout_of(&mut c);
    // An --arch other than the file's is refused, not ignored.
    for command in ["infer", "eval"] {
        let mut c = bin();
        c.args([command, "--backend", backend(), "--arch", "c8k3 relu pool2 flat fc10", "--weights"])
            .arg(tmp.path().join("model.safetensors"));
        if command == "infer" {
            c.arg("tests/images/7_black_on_white.png");
        }
        fails_with(&mut c, &["model.safetensors", "holds the model 'c4k3", "not --arch's"]);
    }
}

#[test]
fn summary_explains_the_classifier_input() {
    let out = stdout_of(bin().arg("summary"));
    assert!(
        out.contains("121514") && out.contains("3136") && out.contains("conv2.2") && out.contains("20.81"),
        "{out}"
    );
    let out = stdout_of(bin().args(["summary", "--arch", "c8k3 relu pool2 flat fc10"]));
    assert!(out.contains("1568") && out.contains("15690") && out.contains("layers.4"), "{out}");
}

#[test]
fn devices_lists_the_adapters_and_the_engine_each_runs() {
    let out = bin().arg("devices").output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !common::in_ci() && se.contains("no GPU adapter found") {
        eprintln!("\n*** SKIPPED: no GPU adapter on this machine ***\n");
        return;
    }
    assert!(out.status.success(), "{so}{se}");
    assert!(so.contains("storage buffers/stage"), "{so}");
    if common::in_ci() {
        // lavapipe's 8-lane subgroups get the subgroup engine; GL has none.
        assert!(
            so.contains(
                "subgroups: 8..8 lanes; GEMM engines: tiled, subgroup, coop-emulated; runs: subgroup (the best here)"
            ),
            "{so}"
        );
        assert!(so.contains("subgroups: none; GEMM engines: tiled; runs: tiled (the best here)"), "{so}");
        // Neither software driver has tensor cores; lavapipe has f16 shaders, llvmpipe's GL none.
        assert!(so.contains("f16 shaders: true; cooperative matrices: none; --precision mixed: no"), "{so}");
        assert!(so.contains("f16 shaders: false; cooperative matrices: none; --precision mixed: no"), "{so}");
        // The engine asked for is the one shown, or why an adapter cannot run it.
        let asked = stdout_of(bin().args(["devices", "--gemm", "subgroup"]));
        assert!(asked.contains("runs: subgroup (asked for)"), "{asked}");
        assert!(asked.contains("runs: none: the subgroup GEMM engine needs subgroups"), "{asked}");
        let asked = stdout_of(bin().env("GPU_CNN_GEMM", "tiled").arg("devices"));
        assert_eq!(asked.matches("runs: tiled (asked for)").count(), 2, "{asked}");
    }
}

#[test]
fn both_gemm_engines_read_the_pictures_alike_and_a_bad_choice_is_named() {
    let infer = |engine: &str, backend: &str| {
        let mut c = bin();
        c.args(["infer", "tests/images", "--backend", backend, "--gemm", engine]);
        c
    };
    let auto = stdout_of(&mut infer("auto", backend()));
    let tiled = stdout_of(&mut infer("tiled", backend()));
    let digits = |out: &str| out.lines().map(|l| l.split(": ").nth(1).unwrap()[..1].to_string()).collect::<Vec<_>>();
    assert_eq!(digits(&auto), digits(&tiled), "{auto}\n{tiled}");
    assert_eq!(digits(&auto).len(), 10, "{auto}");
    exits_with(&mut infer("fastest", backend()), 2, &["fastest", "expected tiled, subgroup, coop or coop-emulated"]);
    // GL has no subgroups, so it cannot run the subgroup engine; the variable says the same.
    fails_with(&mut infer("subgroup", "gl"), &["subgroup GEMM engine needs subgroups", "Gl"]);
    let mut c = bin();
    c.env("GPU_CNN_GEMM", "subgroup").args(["infer", "tests/images", "--backend", "gl"]);
    fails_with(&mut c, &["subgroup GEMM engine needs subgroups"]);
    // The variable's old name is refused rather than silently ignored.
    let mut c = bin();
    c.env("GPU_CNN_CONV", "tiled").args(["infer", "tests/images"]);
    fails_with(&mut c, &["GPU_CNN_CONV=tiled", "GPU_CNN_GEMM"]);
}

#[test]
fn mixed_precision_runs_where_it_can_and_is_refused_clearly_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut c = bin();
        c.args(["infer", "tests/images", "--backend", backend()]).args(extra);
        c
    };
    // --precision and --gemm must agree, whichever way round they are given.
    fails_with(&mut run(&["--gemm", "subgroup", "--precision", "mixed"]), &["--gemm subgroup computes in f32"]);
    fails_with(&mut run(&["--gemm", "coop", "--precision", "f32"]), &["--gemm coop computes in mixed"]);
    exits_with(&mut run(&["--precision", "half"]), 2, &["unknown precision 'half'"]);
    if !common::in_ci() {
        return;
    }
    // lavapipe has no tensor cores: mixed precision is refused, saying what would run it.
    let mut c = bin();
    c.args(["train", "--steps", "1", "--backend", "vulkan", "--precision", "mixed", "--out"]).arg(tmp.path());
    fails_with(&mut c, &["tensor cores", "llvmpipe", "--precision f32", "--gemm coop-emulated"]);
    let mut c = bin();
    c.env("GPU_CNN_PRECISION", "mixed").args(["infer", "tests/images", "--backend", "vulkan"]);
    fails_with(&mut c, &["tensor cores"]);
    // Its arithmetic without tensor cores trains (the first line says so) and reads the
    // shipped pictures as f32 does.
    let out = train(&tmp.path().join("mixed"), 2, &["--gemm", "coop-emulated"]);
    assert!(out.contains("coop-emulated GEMM engine (mixed precision"), "{out}");
    assert!(out.contains("step 2"), "{out}");
    let digits = |out: &str| out.lines().map(|l| l.split(": ").nth(1).unwrap()[..1].to_string()).collect::<Vec<_>>();
    let f32_out = stdout_of(&mut run(&[]));
    let mixed_out = stdout_of(&mut run(&["--gemm", "coop-emulated"]));
    assert_eq!(digits(&mixed_out), digits(&f32_out), "{mixed_out}\n{f32_out}");
}

#[test]
fn bench_reports_rates_a_reference_sgemm_and_a_per_op_profile() {
    let out =
        stdout_of(bin().args(["bench", "--backend", backend(), "--steps", "1", "--infer-batches", "1,3", "--json"]));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(j["train_samples_per_s"].as_f64().unwrap() > 0.0, "{out}");
    assert!(j["first_step_s"].as_f64().unwrap() > 0.0, "{out}");
    // The figures carry the command that made them.
    let command = j["command"].as_str().unwrap();
    assert!(
        command.ends_with(&format!("bench --backend {} --steps 1 --infer-batches 1,3 --json", backend())),
        "{command}"
    );
    // lavapipe compiles the step's pipelines on two devices first (tests/warmup.rs).
    let shares = &j["first_step_compiled_by"];
    if j["backend"].as_str().unwrap().starts_with("Vulkan: llvmpipe") {
        let taken = shares["this_device"].as_u64().unwrap() + shares["helper"].as_u64().unwrap();
        assert!(taken >= 10, "{out}");
    } else {
        assert!(shares.is_null(), "{out}");
    }
    let batches: Vec<_> = j["inference"].as_array().unwrap().iter().map(|r| r["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 3]);
    let sgemm = j["reference_sgemm_gflops"].as_f64().unwrap();
    assert!(sgemm > 0.0, "{out}");
    let ops = j["ops"].as_array().unwrap();
    // An op's name may carry its tile between the entry point and "+relu"
    // (conv2d_subgroup.forward@16x64+relu) where the engine has more than one.
    let has = |layer: &str, op: &str| {
        ops.iter().any(|o| {
            let name = o["op"].as_str().unwrap();
            let (entry, fused) = op.split_once('+').map_or((op, None), |(e, f)| (e, Some(f)));
            o["layer"] == layer && name.contains(entry) && fused.is_none_or(|f| name.ends_with(&format!("+{f}")))
        })
    };
    // Every conv layer of the tutorial model is profiled forward and for its weights;
    // the first one computes no input gradient, the others do. On the subgroup engine
    // the two convolutions before a pool do the pool in their epilogue, and no
    // maxpool.forward runs; elsewhere both pools run on their own. The subgroup
    // engine computes the weight gradients kernel row by kernel row.
    let subgroup = j["backend"].as_str().unwrap().contains("subgroup GEMM engine");
    let weights = if subgroup { ".backward_weight_bias_rows" } else { ".backward_weight_bias" };
    for layer in ["conv1.0", "conv2.0", "conv2.2", "conv3.0"] {
        let pools = subgroup && ["conv1.0", "conv2.2"].contains(&layer);
        let forward = if pools { ".forward+relu+pool" } else { ".forward+relu" };
        assert!(has(layer, forward) && has(layer, weights), "{layer}: {out}");
        assert_eq!(has(layer, ".backward_input"), layer != "conv1.0", "{layer}: {out}");
    }
    for pool in ["conv1.2", "conv2.4"] {
        assert_eq!(has(pool, "maxpool.forward"), !subgroup, "{pool}: {out}");
    }
    // The FLOPs the profile counts for the forward GEMMs are the model's, at batch 64.
    let model = Model::tutorial();
    let want: u64 = model.layers.iter().filter(|l| l.op.params().is_some()).map(|l| 64 * l.flops_per_sample()).sum();
    let forward: u64 = ops
        .iter()
        .filter(|o| o["op"].as_str().unwrap().contains(".forward"))
        .map(|o| o["flops"].as_u64().unwrap())
        .sum();
    assert_eq!(forward, want, "{out}");
    // Rates as a share of the SGEMM are given for the compute-bound ops only.
    for o in ops {
        assert_eq!(o["of_sgemm"].is_null(), o["flops"] == 0, "{o}");
        assert!(o["ms"].as_f64().unwrap() > 0.0, "{o}");
    }
}

fn default_weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/weights/mnist-cnn.safetensors")
}

#[test]
fn infer_reads_the_shipped_pictures_with_the_default_weights() {
    let out = stdout_of(bin().args(["infer", "tests/images", "--backend", backend()]));
    let mut n = 0;
    for line in out.lines() {
        // "tests/images/7_black_on_white.png: 7  (7 99.9%, …)"
        let (file, rest) = line.split_once(": ").unwrap();
        let want = Path::new(file).file_name().unwrap().to_str().unwrap().chars().next().unwrap();
        assert_eq!(rest.chars().next().unwrap(), want, "{line}");
        n += 1;
    }
    assert_eq!(n, 10, "{out}");
    let tmp = tempfile::tempdir().unwrap();
    // A 1 under the stem of the 4 next to it: both saved inputs are kept.
    let one = tmp.path().join("4_large.png");
    std::fs::copy("tests/images/1_rgba_transparent.png", &one).unwrap();
    let saved = tmp.path().join("seen");
    let out = stdout_of(
        bin()
            .args(["infer", "tests/images/1_rgba_transparent.png", "tests/images/4_large.bmp"])
            .arg(&one)
            .args(["--json", "--backend", backend(), "--save-preprocessed"])
            .arg(&saved),
    );
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let digits: Vec<Option<u64>> = rows.iter().map(|r| r["digit"].as_u64()).collect();
    assert_eq!(digits, [Some(1), Some(4), Some(1)]);
    assert_eq!(rows[0]["top3"].as_array().unwrap().len(), 3);
    let seen = |name: &str| image::open(saved.join(name)).unwrap().into_luma8();
    assert_eq!(seen("4_large.28x28.png").dimensions(), (28, 28));
    assert_eq!(seen("4_large-2.28x28.png"), seen("1_rgba_transparent.28x28.png"));
    assert_ne!(seen("4_large.28x28.png"), seen("4_large-2.28x28.png"));
    assert!(default_weights().is_file());
}

#[test]
fn infer_never_saves_over_one_of_its_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inf");
    std::fs::create_dir(&dir).unwrap();
    // a.png's preprocessed input goes to a.28x28.png, here a picture of the user's.
    std::fs::copy("tests/images/7_black_on_white.png", dir.join("a.png")).unwrap();
    std::fs::copy("tests/images/4_large.bmp", dir.join("a.28x28.png")).unwrap();
    let before = common::snapshot(&dir);
    let mut c = bin();
    c.args(["infer", "--backend", "cpu", "--save-preprocessed"]).arg(&dir).arg(dir.join("a.png"));
    let inputs = [dir.join("a.28x28.png")];
    let out = outcome(c.args(&inputs)).fails_with(&["a.28x28.png: --save-preprocessed would write over the input"]);
    assert!(out.stderr.contains(&inputs[0].display().to_string()) && out.stdout.is_empty(), "{}", out.stderr);
    assert!(common::snapshot(&dir) == before, "a file was written");
    // Into another directory, the same pictures are read and their inputs saved.
    let saved = tmp.path().join("saved");
    let mut c = bin();
    c.args(["infer", "--backend", "cpu", "--save-preprocessed"]).arg(&saved).arg(dir.join("a.png")).args(&inputs);
    outcome(&mut c).ok();
    assert!(saved.join("a.28x28.png").is_file() && saved.join("a.28x28.28x28.png").is_file());
}

/// A PNG whose header claims `w`x`h` pixels, with empty image data: it reports its
/// size like a real one, and decoding it would need w*h bytes.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut body = kind.to_vec();
        body.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(&body);
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend(&body);
        v.extend(crc.sum().to_be_bytes());
        v
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(chunk(b"IHDR", &ihdr));
    v.extend(chunk(b"IDAT", &[]));
    v.extend(chunk(b"IEND", &[]));
    v
}

#[test]
fn bad_images_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let infer = |f: &Path| {
        let mut c = bin();
        c.args(["infer", "--backend", backend()]).arg(f);
        c
    };
    fails_with(&mut infer(&p("missing.png")), &["missing.png", "no such file"]);
    std::fs::write(p("empty.png"), b"").unwrap();
    fails_with(&mut infer(&p("empty.png")), &["empty.png", "empty"]);
    std::fs::write(p("notes.txt"), b"this is not a picture").unwrap();
    fails_with(&mut infer(&p("notes.txt")), &["notes.txt", "not an image"]);
    let good = std::fs::read("tests/images/7_black_on_white.png").unwrap();
    std::fs::write(p("cut.png"), &good[..good.len() / 2]).unwrap();
    fails_with(&mut infer(&p("cut.png")), &["cut.png"]);
    std::fs::write(p("huge.png"), png_header(20_000, 20_000)).unwrap();
    fails_with(&mut infer(&p("huge.png")), &["huge.png", "20000x20000", "pixel limit"]);
    image::GrayImage::from_pixel(40, 40, image::Luma([255])).save(p("blank.png")).unwrap();
    fails_with(&mut infer(&p("blank.png")), &["blank.png", "blank"]);
    std::fs::create_dir(p("nothing")).unwrap();
    fails_with(&mut infer(&p("nothing")), &["nothing", "no image files"]);
}

fn write_checkpoint(path: &Path, tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>) {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// The tutorial model's state_dict as (name, dtype, shape, bytes), from PyTorch's point of view.
fn seed_tensors() -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let m = Model::tutorial();
    let p = m.init_params(0);
    m.params
        .iter()
        .map(|i| {
            (
                i.name.clone(),
                Dtype::F32,
                i.shape.clone(),
                bytemuck::cast_slice(&p[i.offset..i.offset + i.numel()]).to_vec(),
            )
        })
        .collect()
}

#[test]
fn bad_checkpoints_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let img = "tests/images/7_black_on_white.png";
    let infer = |w: &Path| {
        let mut c = bin();
        c.args(["infer", img, "--backend", backend(), "--weights"]).arg(w);
        c
    };
    // A file as PyTorch writes it (no gpu-cnn metadata) loads.
    let ok = tmp.path().join("torch.safetensors");
    write_checkpoint(&ok, seed_tensors());
    stdout_of(&mut infer(&ok));

    let p = tmp.path().join("text.safetensors");
    std::fs::write(&p, b"not safetensors at all").unwrap();
    fails_with(&mut infer(&p), &["text.safetensors", "not a safetensors file"]);

    let mut t = seed_tensors();
    t.retain(|x| x.0 != "conv2.2.bias");
    let p = tmp.path().join("missing.safetensors");
    write_checkpoint(&p, t);
    fails_with(&mut infer(&p), &["missing key 'conv2.2.bias'", "[32]"]);

    let mut t = seed_tensors();
    t.push(("conv4.0.weight".into(), Dtype::F32, vec![1], vec![0; 4]));
    let p = tmp.path().join("extra.safetensors");
    write_checkpoint(&p, t);
    fails_with(&mut infer(&p), &["unexpected key 'conv4.0.weight'"]);

    let mut t = seed_tensors();
    t[8].2 = vec![3136, 10];
    let p = tmp.path().join("shape.safetensors");
    write_checkpoint(&p, t);
    fails_with(&mut infer(&p), &["'out.weight'", "[3136, 10]", "[10, 3136]"]);

    let mut t = seed_tensors();
    t[1] = (t[1].0.clone(), Dtype::F16, vec![16], vec![0; 32]);
    let p = tmp.path().join("dtype.safetensors");
    write_checkpoint(&p, t);
    fails_with(&mut infer(&p), &["'conv1.0.bias'", "F16", "F32"]);

    fails_with(&mut infer(&tmp.path().join("absent.safetensors")), &["absent.safetensors"]);
}

/// Both splits of `dir` as the given file bytes.
fn idx_dir(dir: &Path, images: Vec<u8>, labels: Vec<u8>) {
    std::fs::create_dir_all(dir).unwrap();
    for split in ["train", "t10k"] {
        std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), &images).unwrap();
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), &labels).unwrap();
    }
}

#[test]
fn bad_datasets_and_options_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let train_on = |dir: &Path| {
        let mut c = bin();
        c.args(["train", "--steps", "1", "--backend", backend(), "--data"])
            .arg(dir)
            .arg("--out")
            .arg(tmp.path().join("out"));
        c
    };
    let good_labels = common::idx_bytes(&[2], &[1, 2]);
    let images = common::idx_bytes(&[2, 28, 28], &[0u8; 2 * 784]);

    let d = tmp.path().join("magic");
    let mut bad = images.clone();
    bad[3] = 0x04;
    idx_dir(&d, bad, good_labels.clone());
    fails_with(&mut train_on(&d), &["train-images-idx3-ubyte", "magic"]);

    let d = tmp.path().join("short");
    idx_dir(&d, images[..images.len() - 10].to_vec(), good_labels.clone());
    fails_with(&mut train_on(&d), &["train-images-idx3-ubyte", "1568 bytes", "1558"]);

    let d = tmp.path().join("dims");
    idx_dir(&d, common::idx_bytes(&[2, 32, 32], &[0u8; 2 * 1024]), good_labels.clone());
    fails_with(&mut train_on(&d), &["32x32", "28x28"]);

    let d = tmp.path().join("label");
    idx_dir(&d, images.clone(), common::idx_bytes(&[2], &[1, 10]));
    fails_with(&mut train_on(&d), &["train-labels-idx1-ubyte", "label 10"]);

    fails_with(&mut train_on(&tmp.path().join("nowhere")), &["nowhere", "no such directory"]);
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    fails_with(&mut train_on(&file), &["a-file", "not a directory"]);

    let mut c = bin();
    c.args(["train", "--steps", "1", "--arch", "c8k5 pool2 pool2 pool2 pool2 pool2 flat fc10"]);
    fails_with(&mut c, &["--arch layer 6", "pool2", "larger"]);

    let mut c = bin();
    c.args(["train", "--steps", "1", "--out"]).arg(file.join("sub"));
    fails_with(&mut c, &["cannot create output directory", "a-file"]);

    // No adapter for the asked backend (no Metal on Linux, no Vulkan/GL on macOS…).
    let absent = if cfg!(target_os = "macos") { "vulkan" } else { "metal" };
    let mut c = bin();
    c.args(["train", "--steps", "1", "--backend", absent, "--out"]).arg(tmp.path().join("x"));
    fails_with(&mut c, &["no GPU adapter found", "mesa-vulkan-drivers", "--backend cpu"]);
}

// A batch whose activations exceed one binding (128 MiB on lavapipe: conv1's output
// is 50,176 bytes a picture, so 2,674 pictures a micro-batch) trains as micro-batches,
// and what it logs is the whole batch's.
#[test]
fn a_batch_of_8192_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.args(["train", "--steps", "1", "--batch-size", "8192", "--log-every", "1", "--backend", backend(), "--out"])
        .arg(tmp.path());
    let out = stdout_of(&mut c);
    assert!(out.contains("batch 8192") && out.contains("step 1"), "{out}");
    let metrics = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let (loss, acc) = (first["loss"].as_f64().unwrap(), first["accuracy"].as_f64().unwrap());
    // An untrained model's mean loss is about ln 10, and an accuracy is a multiple of 1/8192.
    assert!((1.5..3.5).contains(&loss), "{first}");
    assert!(((acc * 8192.0).round() - acc * 8192.0).abs() < 1e-6, "{first}");
    let ck = checkpoint::load(&tmp.path().join("checkpoint.safetensors"), &Model::tutorial()).unwrap();
    assert_eq!(ck.position.unwrap().batch_size, 8192);
}

#[test]
fn a_diverging_run_stops_with_a_clear_message_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    train(tmp.path(), 2, &[]);
    let ckpt = tmp.path().join("checkpoint.safetensors");
    let before = std::fs::read(&ckpt).unwrap();
    let mut c = bin();
    c.args([
        "train",
        "--steps",
        "20",
        "--batch-size",
        "8",
        "--log-every",
        "1",
        "--lr",
        "1e30",
        "--backend",
        backend(),
        "--overwrite",
        "--out",
    ])
    .arg(tmp.path());
    // --overwrite replaces the earlier run only as the new one saves, which this one never does.
    fails_with(&mut c, &["the loss became", "at step", "lower --lr (e.g. 1.0e29)", "checkpoint.safetensors"]);
    assert_eq!(std::fs::read(&ckpt).unwrap(), before, "the last good checkpoint was overwritten");
}

// A finished run is a user's work: a new run into its directory is refused (the files
// untouched) unless --overwrite; --resume writes into the checkpoint's own directory,
// and never rolls another directory's later run back.
#[test]
fn an_earlier_run_is_kept_unless_overwrite_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train(&a, 2, &[]);
    let files = ["checkpoint.safetensors", "model.safetensors", "metrics.jsonl", "curves.png"];
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(a.join(f)).unwrap()).collect();
    let mut c = bin();
    c.args(["train", "--steps", "1", "--batch-size", "8", "--backend", backend(), "--out"]).arg(&a);
    let resume = a.join("checkpoint.safetensors");
    fails_with(&mut c, &[&a.display().to_string(), "holds another run", "--overwrite", &resume.display().to_string()]);
    let after: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(a.join(f)).unwrap()).collect();
    assert!(before == after, "a refused run changed the earlier run's files");

    // --resume without --out continues in the checkpoint's directory.
    let mut c = bin();
    c.args(["train", "--steps", "3", "--log-every", "1", "--backend", backend(), "--resume"]).arg(&resume);
    stdout_of(&mut c);
    let at = |dir: &Path| {
        let ck = checkpoint::load(&dir.join("checkpoint.safetensors"), &Model::tutorial()).unwrap();
        ck.position.unwrap().global_step
    };
    assert_eq!(at(&a), 3);

    // Resuming a's step-3 checkpoint into b, which holds a later run, is refused.
    train(&b, 5, &[]);
    let mut c = bin();
    c.args(["train", "--steps", "4", "--backend", backend(), "--resume"]).arg(&resume).arg("--out").arg(&b);
    fails_with(&mut c, &[&b.display().to_string(), "holds another run"]);
    assert_eq!(at(&b), 5);

    // --overwrite replaces the run.
    train(&b, 1, &["--overwrite"]);
    assert_eq!(at(&b), 1);
}

// Arguments are checked before the output directory is made: a refused run leaves
// nothing, and a number a flag cannot take names that flag.
#[test]
fn refused_arguments_leave_no_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = |flags: &[&str]| {
        let mut c = bin();
        c.args(["train", "--steps", "3", "--backend", backend()]).args(flags).arg("--out").arg(&out);
        c
    };
    exits_with(&mut run(&["--schedule", "step:0"]), 2, &["--schedule", "step interval"]);
    exits_with(&mut run(&["--schedule", "cosine:2"]), 2, &["--schedule", "unknown schedule"]);
    fails_with(&mut run(&["--warmup", "100"]), &["--warmup", "100 steps"]);
    fails_with(&mut run(&["--lr", "-1"]), &["--lr -1: must be finite and positive"]);
    fails_with(&mut run(&["--lr", "nan"]), &["--lr NaN: must be finite and positive"]);
    fails_with(&mut run(&["--optimizer", "sgd", "--momentum", "2"]), &["--momentum 2: must be in [0, 1]"]);
    fails_with(&mut run(&["--weight-decay", "-0.5"]), &["--weight-decay -0.5: must be finite and at least 0"]);
    let nowhere = tmp.path().join("nowhere");
    fails_with(&mut run(&["--data", nowhere.to_str().unwrap()]), &["nowhere"]);
    assert!(!out.exists(), "a refused run created {}", out.display());

    for (flag, value) in [("--steps", "0"), ("--batch-size", "2000000"), ("--infer-batches", "1,0")] {
        let mut c = bin();
        c.args(["bench", "--backend", backend(), flag, value]);
        exits_with(&mut c, 2, &[flag]);
    }
}

// --gemm and --precision are offered by the commands that run the model, and only there.
#[test]
fn engine_options_are_offered_where_they_act() {
    for command in ["train", "infer", "explain", "eval", "bench", "serve", "devices"] {
        let help = stdout_of(bin().args([command, "--help"]));
        assert!(help.contains("--gemm") && help.contains("--precision"), "{command} --help:\n{help}");
    }
    for command in ["summary", "plot"] {
        let help = stdout_of(bin().args([command, "--help"]));
        assert!(!help.contains("--gemm") && !help.contains("--precision"), "{command} --help:\n{help}");
    }
}

// A negative number reaches the option's own check, whose message names the option,
// not clap's "unexpected argument '-1'".
#[test]
fn a_negative_value_is_named_with_its_option() {
    for (command, flag) in [
        ("train", "--epochs"),
        ("train", "--seed"),
        ("train", "--warmup"),
        ("train", "--checkpoint-every"),
        ("bench", "--steps"),
        ("eval", "--batch-size"),
        ("serve", "--batch-wait-ms"),
        ("serve", "--max-batch"),
    ] {
        let out = exits_with(bin().args([command, flag, "-1"]), 2, &[&format!("invalid value '-1' for '{flag}")]);
        assert!(!out.contains("unexpected argument"), "{command} {flag} -1: {out}");
    }
}
