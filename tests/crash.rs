//! Issue #12, "never lose a run": `gpu-cnn train` killed or interrupted at chosen and
//! at random moments, then resumed. After each kill the directory must hold a
//! consistent run (the checkpoint pair of one run, `model.safetensors` never behind the
//! checkpoint, metrics of that run only), `--resume` must take the lock a killed
//! process held, remove what it left half-written and continue, and the end must be
//! the weights of a run never interrupted. Also: the first SIGINT/SIGTERM/SIGHUP stops
//! after the step and saves, a second one ends the process at once, a SIGHUP the
//! parent ignores (nohup) stays ignored, and a second trainer is refused while the
//! first runs.
//!
//! Writes are caught in the middle with the test-only `GPU_CNN_TEST_PAUSE_WRITE` hook
//! (`FILE:N[:SECONDS]`: pause halfway through the Nth write of FILE). Runs use the
//! CPU reference and a tiny model (a step is about a millisecond), except the SIGINT
//! one, which runs the tutorial model on `common::backend()`. The case counts are the
//! `KILLS` and `POINTS` below.
#![cfg(unix)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use gpu_cnn::checkpoint::{self, Checkpoint};
use gpu_cnn::model::Model;
use gpu_cnn::rng::Rng;

mod common;

use common::{backend, bin_std, fails_with, metric_steps, tiny_train, Running};

fn load(path: &Path) -> Checkpoint {
    checkpoint::load(path, &Model::tutorial()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The temporaries left in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    let mut t: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    t.sort();
    t
}

/// What any moment of a run leaves: if there is a checkpoint, `model.safetensors` is of
/// the same run and not behind it, and every metrics line is of that run (a cut last
/// line aside). Returns the checkpoint's step (None: no checkpoint yet).
fn assert_consistent(dir: &Path, why: &str) -> Option<u64> {
    let ck = dir.join("checkpoint.safetensors");
    if !ck.exists() {
        return None;
    }
    let c = load(&ck);
    let stamp = c.stamp.clone().unwrap_or_else(|| panic!("{why}: checkpoint without a stamp"));
    assert_eq!(Some(stamp.step), c.position.map(|p| p.global_step), "{why}");
    let m = load(&dir.join("model.safetensors"));
    let ms = m.stamp.unwrap_or_else(|| panic!("{why}: model.safetensors without a stamp"));
    assert_eq!(ms.run, stamp.run, "{why}: the pair is of two runs");
    assert!(
        ms.step >= stamp.step,
        "{why}: model.safetensors (step {}) is behind the checkpoint ({})",
        ms.step,
        stamp.step
    );
    if ms.step == stamp.step {
        assert_eq!(m.params, c.params, "{why}: the pair differs at the same step");
    }
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    for line in whole.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{why}: {e}: {line}"));
        assert_eq!(v["run"], stamp.run.as_str(), "{why}: a line of another run: {line}");
    }
    Some(stamp.step)
}

/// A finished run of `steps`: the pair at that step, no temporaries, and metrics of one
/// run logging each step once, in order (`log_every` 1).
fn assert_finished(dir: &Path, steps: u64, why: &str) {
    assert_eq!(assert_consistent(dir, why), Some(steps), "{why}");
    assert_eq!(load(&dir.join("model.safetensors")).stamp.unwrap().step, steps, "{why}");
    assert!(temporaries(dir).is_empty(), "{why}: left {:?}", temporaries(dir));
    let logged = metric_steps(dir);
    assert_eq!(logged, (1..=steps).collect::<Vec<_>>(), "{why}: metrics steps");
}

/// The weights of a tiny run never interrupted, for `steps` (in its own directory).
fn reference(tmp: &Path, steps: u64, extra: &[&str]) -> Vec<f32> {
    let dir = tmp.join(format!("reference-{steps}"));
    if dir.join("model.safetensors").exists() {
        return load(&dir.join("model.safetensors")).params;
    }
    let (status, out) = Running::start(tiny_train(&dir, &[&["--steps", &steps.to_string()], extra].concat())).finish();
    assert!(status.success(), "{out}");
    load(&dir.join("model.safetensors")).params
}

#[test]
fn sigint_stops_after_the_step_saves_and_the_printed_command_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let train = |out: &Path, steps: u64| {
        let mut c = bin_std();
        c.args(["train", "--batch-size", "8", "--log-every", "1", "--backend", backend(), "--steps"])
            .arg(steps.to_string())
            .arg("--out")
            .arg(out);
        c
    };
    let mut run = Running::start(train(&dir, 100_000));
    run.wait_for("step 2 ");
    run.signal("INT");
    let (status, out) = run.finish();
    assert_eq!(status.code(), Some(130), "{status}\n{out}");
    let c = load(&dir.join("checkpoint.safetensors"));
    let stopped = c.position.unwrap().global_step;
    assert!(stopped >= 2, "{out}");
    assert!(out.contains(&format!("interrupted by SIGINT: stopped after step {stopped} and saved")), "{out}");
    // Answered when it came, before the stop was reported.
    let (said, stopped_at) =
        (out.find("SIGINT: stopping after the steps already sent to the GPU"), out.find("interrupted by SIGINT"));
    assert!(said.is_some() && said < stopped_at, "the signal was not answered at once:\n{out}");
    // The stop logged its step: the metrics end where the checkpoint is.
    assert_eq!(metric_steps(&dir), (1..=stopped).collect::<Vec<_>>());
    assert_consistent(&dir, "after SIGINT");

    // The printed command, with a nearer --steps, resumes to the weights of a run never stopped.
    let command = out.lines().find_map(|l| l.strip_prefix("resume with: ")).unwrap_or_else(|| panic!("{out}"));
    let mut words: Vec<String> = command.split(' ').map(String::from).collect();
    let checkpoint = dir.join("checkpoint.safetensors").to_string_lossy().into_owned();
    let want = ["train", "--resume", &checkpoint, "--out"];
    assert_eq!(words[1..5], want, "{command}");
    let target = stopped + 2;
    let at = words.iter().position(|w| w == "--steps").unwrap_or_else(|| panic!("{command}"));
    words[at + 1] = target.to_string();
    let mut resume = bin_std();
    resume.args(&words[1..]);
    let (status, out) = Running::start(resume).finish();
    assert!(status.success(), "{out}");
    let whole = tmp.path().join("whole");
    let (status, out) = Running::start(train(&whole, target)).finish();
    assert!(status.success(), "{out}");
    assert_eq!(
        load(&dir.join("model.safetensors")).params,
        load(&whole.join("model.safetensors")).params,
        "interrupted and resumed differs from uninterrupted"
    );
    assert_finished(&dir, target, "resumed after SIGINT");
}

/// `c` run through env(1) with `flag` (`--default-signal=…`, `--ignore-signal=…`): the
/// signal dispositions it starts with, whatever this test process inherited (a runner
/// started under nohup ignores SIGHUP, and the trainer keeps an inherited ignore).
fn with_signals(c: std::process::Command, flag: &str) -> std::process::Command {
    let mut w = std::process::Command::new("env");
    w.arg(flag).arg(c.get_program()).args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    w
}

#[test]
fn sigterm_and_sighup_stop_and_save_with_their_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        let dir = tmp.path().join(signal);
        let train = tiny_train(&dir, &["--steps", "1000000"]);
        let mut run = Running::start(with_signals(train, "--default-signal=HUP,INT,TERM"));
        run.wait_for("step 3 ");
        run.signal(signal);
        let (status, out) = run.finish();
        assert_eq!(status.code(), Some(code), "SIG{signal}: {status}\n{out}");
        let step = assert_consistent(&dir, signal).unwrap_or_else(|| panic!("SIG{signal}: no checkpoint\n{out}"));
        assert!(out.contains(&format!("interrupted by SIG{signal}: stopped after step {step}")), "{out}");
    }
}

// `nohup gpu-cnn train &`: a SIGHUP the parent ignores stays ignored, so closing the
// terminal does not stop the run; SIGTERM still does.
#[test]
fn an_ignored_sighup_stays_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nohup");
    let train = tiny_train(&dir, &["--steps", "1000000"]);
    let mut run = Running::start(with_signals(train, "--ignore-signal=HUP"));
    run.wait_for("step 3 ");
    run.signal("HUP");
    // A caught SIGHUP would stop the run after the step in flight (about a millisecond).
    run.wait_for("step 300 ");
    run.signal("TERM");
    let (status, out) = run.finish();
    assert_eq!(status.code(), Some(143), "{status}\n{out}");
    assert!(out.contains("interrupted by SIGTERM") && !out.contains("SIGHUP"), "{out}");
}

#[test]
fn a_second_signal_ends_the_process_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut c = tiny_train(&dir, &["--steps", "1000000"]);
    // The save the first signal asks for hangs halfway through the checkpoint.
    c.env("GPU_CNN_TEST_PAUSE_WRITE", "checkpoint.safetensors:1");
    let mut run = Running::start(c);
    run.wait_for("step 3 ");
    run.signal("INT");
    run.wait_for("test hook: pausing halfway through");
    let t = std::time::Instant::now();
    run.signal("INT");
    let (status, out) = run.finish();
    assert_eq!(status.signal(), Some(2), "not ended by the second SIGINT: {status}\n{out}");
    assert!(t.elapsed().as_secs() < 60, "the second signal waited for the paused write");
    // The weights went first; the checkpoint never replaced anything.
    assert!(!dir.join("checkpoint.safetensors").exists());
    assert!(load(&dir.join("model.safetensors")).stamp.is_some());
    assert_eq!(temporaries(&dir).len(), 1, "{:?}", temporaries(&dir));
    // The next run in the directory removes it.
    let (status, out) = Running::start(tiny_train(&dir, &["--steps", "2", "--overwrite"])).finish();
    assert!(status.success(), "{out}");
    assert!(out.contains("note: removed what a killed run left half-written") && out.contains(".tmp-"), "{out}");
    assert_finished(&dir, 2, "the run after");
}

#[test]
fn a_second_trainer_is_refused_while_the_first_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut first = Running::start(tiny_train(&dir, &["--steps", "1000000", "--checkpoint-every", "5"]));
    first.wait_for("step 12 ");
    let pid = first.child.id();
    let mut second = common::bin();
    second.args(["train", "--arch", common::TINY, "--backend", "cpu", "--steps", "3", "--out"]).arg(&dir);
    fails_with(
        &mut second,
        &["another gpu-cnn train is writing to this directory", &format!("(pid {pid} on host "), ", started 2"],
    );
    first.signal("TERM");
    let (status, out) = first.finish();
    assert_eq!(status.code(), Some(143), "{out}");
    let step = assert_consistent(&dir, "first trainer").unwrap();
    // Only the first trainer's steps, each once.
    assert_eq!(metric_steps(&dir), (1..=step).collect::<Vec<_>>());
}

/// Where a kill lands in a run saving every 5 steps.
enum Point {
    /// After this step is logged (during the next one).
    AfterStep(u64),
    /// Halfway through the Nth write of this file.
    InWrite(&'static str, u32),
}

const POINTS: [Point; 6] = [
    Point::AfterStep(3),
    Point::AfterStep(17),
    Point::InWrite("model.safetensors", 2),
    Point::InWrite("checkpoint.safetensors", 2),
    Point::InWrite("metrics.jsonl", 1),
    Point::InWrite("curves.png", 1),
];

#[test]
fn kill_9_at_chosen_points_then_resume_continues_the_same_run() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, point) in POINTS.iter().enumerate() {
        let dir = tmp.path().join(format!("point{i}"));
        let mut c = tiny_train(&dir, &["--steps", "1000000", "--checkpoint-every", "5"]);
        let why = match *point {
            Point::AfterStep(s) => format!("kill -9 after step {s}"),
            Point::InWrite(file, n) => {
                c.env("GPU_CNN_TEST_PAUSE_WRITE", format!("{file}:{n}"));
                format!("kill -9 inside write {n} of {file}")
            }
        };
        if matches!(point, Point::InWrite("curves.png", _)) {
            // curves.png is drawn when a run ends: a short one, then.
            c = tiny_train(&dir, &["--steps", "7", "--checkpoint-every", "5"]);
            c.env("GPU_CNN_TEST_PAUSE_WRITE", "curves.png:1");
        }
        let mut run = Running::start(c);
        match *point {
            Point::AfterStep(s) => run.wait_for(&format!("step {s} ")),
            Point::InWrite(..) => run.wait_for("test hook: pausing halfway through"),
        };
        run.signal("KILL");
        let (status, out) = run.finish();
        assert_eq!(status.signal(), Some(9), "{why}: {status}\n{out}");
        let saved = assert_consistent(&dir, &why);
        let left = temporaries(&dir);
        // A kill after a step may also land inside a save.
        let paused = matches!(point, Point::InWrite(..));
        assert!(if paused { left.len() == 1 } else { left.len() <= 1 }, "{why}: {left:?}");
        // Resume from whatever checkpoint there is (a run killed before its first has none).
        let target = saved.unwrap_or(0) + 6;
        let mut resume = tiny_train(&dir, &["--steps", &target.to_string(), "--checkpoint-every", "5"]);
        match saved {
            Some(_) => resume.arg("--resume").arg(dir.join("checkpoint.safetensors")),
            // Killed inside its first save, a run may leave weights without a checkpoint.
            None => resume.arg("--overwrite"),
        };
        let (status, out) = Running::start(resume).finish();
        assert!(status.success(), "{why}: resume failed\n{out}");
        assert_eq!(out.contains("note: removed what a killed run left half-written"), !left.is_empty(), "{why}: {out}");
        assert_consistent(&dir, &why);
        assert!(temporaries(&dir).is_empty(), "{why}");
        assert_eq!(load(&dir.join("model.safetensors")).params, reference(tmp.path(), target, &[]), "{why}");
        let logged = metric_steps(&dir);
        assert!(logged.windows(2).all(|w| w[0] < w[1]) && logged.last() == Some(&target), "{why}: {logged:?}");
        // Killed inside the first metrics commit, a run loses the lines before it (its
        // checkpoint is kept): the one window documented as losing metrics, which a
        // kill after a step can also land in, on a loaded machine.
        let first_commit_lost = saved == Some(5) && logged == (6..=target).collect::<Vec<_>>();
        if !matches!(point, Point::InWrite("metrics.jsonl", _)) && !first_commit_lost {
            assert_eq!(logged, (1..=target).collect::<Vec<_>>(), "{why}");
        }
    }
}

/// How many times the random-kill test kills one run before letting it finish.
const KILLS: u32 = 12;

#[test]
fn kill_9_at_random_moments_many_times_still_ends_at_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    // 64 pictures, 8 batches an epoch: epoch ends (an evaluation and a save) come often.
    let data = tmp.path().join("data");
    let mnist = gpu_cnn::data::Dataset::load(&gpu_cnn::data::bundled_mnist_dir(), gpu_cnn::data::Split::Train).unwrap();
    let small = mnist.take(64);
    common::write_split(&data, "train", 28, 28, &small.images, &small.labels);
    common::write_split(&data, "t10k", 28, 28, &small.images[..32 * 784], &small.labels[..32]);
    let target: u64 = 1500;
    let args = |dir: &Path| {
        let mut c = tiny_train(dir, &["--steps", &target.to_string(), "--epochs", "1000", "--checkpoint-every", "7"]);
        c.arg("--data").arg(&data);
        c
    };
    let dir = tmp.path().join("run");
    let mut rng = Rng::new(12);
    let (mut kills, mut saves_seen) = (0, Vec::new());
    let mut resume_from: Option<PathBuf> = None;
    loop {
        let mut c = args(&dir);
        match &resume_from {
            Some(ck) => c.arg("--resume").arg(ck),
            // Killed inside its first save, a run may leave weights without a checkpoint.
            None => c.arg("--overwrite"),
        };
        let mut run = Running::start(c);
        if kills < KILLS {
            run.wait_for("step ");
            std::thread::sleep(std::time::Duration::from_millis(rng.uniform(0.0, 400.0) as u64));
            run.signal("KILL");
        }
        let (status, out) = run.finish();
        let why = format!("after kill {kills}");
        if status.success() {
            break;
        }
        assert_eq!(status.signal(), Some(9), "{why}: {status}\n{out}");
        kills += 1;
        let saved = assert_consistent(&dir, &why);
        saves_seen.push(saved);
        resume_from = saved.map(|_| dir.join("checkpoint.safetensors"));
    }
    eprintln!("{kills} kills; checkpoint steps after each: {saves_seen:?}");
    assert!(kills >= 3, "the run ended before it could be killed often: {saves_seen:?}");
    let (status, out) = Running::start(args(&tmp.path().join("whole"))).finish();
    assert!(status.success(), "{out}");
    assert_eq!(
        load(&dir.join("model.safetensors")).params,
        load(&tmp.path().join("whole/model.safetensors")).params,
        "killed {kills} times and resumed, the run differs from an uninterrupted one"
    );
    assert_consistent(&dir, "at the end");
    assert!(temporaries(&dir).is_empty());
    let logged = metric_steps(&dir);
    assert!(logged.windows(2).all(|w| w[0] < w[1]) && logged.last() == Some(&target), "{logged:?}");
}

/// The bytes of a run's files (None: absent), to tell that a command left them as they were.
fn run_files(dir: &Path) -> Vec<(&'static str, Option<Vec<u8>>)> {
    ["checkpoint.safetensors", "model.safetensors", "metrics.jsonl", "curves.png"]
        .into_iter()
        .map(|f| (f, std::fs::read(dir.join(f)).ok()))
        .collect()
}

#[test]
fn a_run_that_trains_nothing_leaves_the_directory_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (status, out) = Running::start(tiny_train(&dir, &["--steps", "4"])).finish();
    assert!(status.success(), "{out}");
    let before = run_files(&dir);
    assert!(before.iter().all(|(_, b)| b.is_some()), "{out}");
    // A fresh run of no epochs into another run's directory, and a resume already at its --steps.
    let ck = dir.join("checkpoint.safetensors").to_string_lossy().into_owned();
    for extra in [vec!["--epochs", "0"], vec!["--resume", &ck, "--steps", "4"]] {
        let (status, out) = Running::start(tiny_train(&dir, &extra)).finish();
        assert!(status.success(), "{extra:?}: {out}");
        assert!(out.contains("nothing to train") && out.contains(": left as it was"), "{extra:?}: {out}");
        assert!(!out.contains("wrote"), "{extra:?}: {out}");
        assert!(run_files(&dir) == before, "{extra:?} changed the run's files: {out}");
    }
    let empty = tmp.path().join("empty");
    let (status, out) = Running::start(tiny_train(&empty, &["--epochs", "0"])).finish();
    assert!(status.success() && out.contains(": nothing written"), "{out}");
    assert!(run_files(&empty).iter().all(|(_, b)| b.is_none()), "{out}");
}

#[test]
fn resume_refuses_flags_that_differ_from_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Adam at 0.001, batches of 8, shuffled, the tiny model.
    let (status, out) = Running::start(tiny_train(&dir, &["--steps", "2"])).finish();
    assert!(status.success(), "{out}");
    let ck = dir.join("checkpoint.safetensors");
    let resume = |extra: &[&str]| {
        let mut c = common::bin();
        c.args(["train", "--backend", "cpu", "--steps", "3", "--resume"]).arg(&ck).arg("--out").arg(&dir).args(extra);
        c
    };
    let name = ck.display().to_string();
    let other = "c8k3 relu pool2 flat fc10";
    let conflicts: [(&[&str], String); 7] = [
        (&["--lr", "0.01"], "--lr 0.01 (it holds 0.001)".into()),
        (&["--optimizer", "sgd"], "--optimizer sgd (it holds adam)".into()),
        (&["--momentum", "0.5"], "--momentum 0.5 (it holds Adam, which has none)".into()),
        (&["--batch-size", "16"], "--batch-size 16 (it holds 8)".into()),
        (&["--no-shuffle"], "--no-shuffle (it shuffles)".into()),
        (&["--arch", other], format!("--arch '{other}' (it holds 'c4k3s1p1 relu pool2s2 flat fc10')")),
        (&["--seed", "3"], "--seed 3 (it holds its shuffle position".into()),
    ];
    for (flags, says) in &conflicts {
        fails_with(&mut resume(flags), &[&name, "--resume continues the run as saved", says, "--init"]);
    }
    fails_with(&mut resume(&["--lr", "0.01", "--batch-size", "16"]), &["--lr 0.01 (", "--batch-size 16 ("]);
    // The refusals trained nothing.
    assert_eq!(load(&ck).position.unwrap().global_step, 2);
    // Flags equal to the checkpoint's are no conflict.
    let same = ["--lr", "0.001", "--optimizer", "adam", "--batch-size", "8", "--arch", common::TINY];
    let out = common::stdout_of(&mut resume(&same));
    assert!(out.contains("step 3: wrote"), "{out}");

    // --init starts a new run from the weights: the flags apply (the start line says
    // them), but its model is the file's, so another --arch is refused.
    let init = |out: &Path, extra: &[&str]| {
        let mut c = common::bin();
        c.args(["train", "--backend", "cpu", "--steps", "1", "--init"]).arg(&ck).arg("--out").arg(out).args(extra);
        c
    };
    let fresh = tmp.path().join("fresh");
    fails_with(&mut init(&fresh, &["--arch", other]), &[&name, "holds the model 'c4k3s1p1 relu", "leave --arch out"]);
    let out = common::stdout_of(&mut init(&fresh, &["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.5"]));
    assert!(out.contains("Sgd { lr: 0.05, momentum: 0.5"), "{out}");
    // Adam has no momentum to set.
    fails_with(&mut init(&fresh, &["--momentum", "0.5"]), &["--momentum 0.5: Adam has no momentum"]);
}

#[test]
fn curves_after_a_resume_are_drawn_from_the_whole_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (status, out) = Running::start(tiny_train(&dir, &["--steps", "6"])).finish();
    assert!(status.success(), "{out}");
    let mut c = tiny_train(&dir, &["--steps", "10"]);
    c.arg("--resume").arg(dir.join("checkpoint.safetensors"));
    let (status, out) = Running::start(c).finish();
    assert!(status.success(), "{out}");
    assert_eq!(metric_steps(&dir), (1..=10).collect::<Vec<_>>());
    let (train, test) = gpu_cnn::metrics_log::MetricsLog::read(&dir.join("metrics.jsonl")).unwrap().curves();
    let draw = |train: &[(u64, f64, f64)], name: &str| {
        let path = tmp.path().join(name);
        gpu_cnn::plot::training_curves(train, &test, &path).unwrap();
        std::fs::read(path).unwrap()
    };
    let drawn = std::fs::read(dir.join("curves.png")).unwrap();
    assert!(drawn == draw(&train, "whole.png"), "curves.png is not the whole run's metrics");
    let resumed: Vec<_> = train.iter().copied().filter(|p| p.0 > 6).collect();
    assert!(drawn != draw(&resumed, "resumed.png"), "the resumed part alone draws the same picture");
}

#[test]
fn a_scheduled_run_stopped_by_a_signal_resumes_on_its_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let schedule = ["--schedule", "cosine", "--warmup", "3", "--weight-decay", "0.01"];
    let mut c = tiny_train(&dir, &[&["--steps", "40", "--checkpoint-every", "5"][..], &schedule].concat());
    // The signal lands while the save at step 5 is paused: the run stops after step 6.
    c.env("GPU_CNN_TEST_PAUSE_WRITE", "checkpoint.safetensors:1:2");
    let mut run = Running::start(c);
    run.wait_for("test hook: pausing halfway through");
    run.signal("TERM");
    let (status, out) = run.finish();
    assert_eq!(status.code(), Some(143), "{status}\n{out}");
    assert_eq!(assert_consistent(&dir, "after SIGTERM"), Some(6), "{out}");
    let ck = dir.join("checkpoint.safetensors");
    // The schedule is the checkpoint's: giving it again is refused by the parser.
    let mut again = common::bin();
    again.args(["train", "--backend", "cpu", "--schedule", "cosine", "--resume"]).arg(&ck).arg("--out").arg(&dir);
    common::exits_with(&mut again, 2, &["--schedule", "cannot be used with"]);
    let mut resume = tiny_train(&dir, &["--steps", "40"]);
    resume.arg("--resume").arg(&ck);
    let (status, out) = Running::start(resume).finish();
    assert!(status.success(), "{out}");
    assert_eq!(load(&dir.join("model.safetensors")).params, reference(tmp.path(), 40, &schedule));
    assert_finished(&dir, 40, "resumed on its schedule");
}

#[test]
fn a_closed_stdout_stops_train_after_the_step_and_saves() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut c = tiny_train(&dir, &["--steps", "1000000"]);
    let mut child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while !lines.next().unwrap().unwrap().contains("step 3 ") {}
    // The reader goes away, as `gpu-cnn train | head` does.
    drop(lines);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{}\n{err}", out.status);
    let step = assert_consistent(&dir, "after a closed stdout").unwrap_or_else(|| panic!("nothing saved\n{err}"));
    assert!(
        step >= 3 && err.contains(&format!("standard output was closed: stopped after step {step} and saved")),
        "{err}"
    );
    assert_eq!(metric_steps(&dir), (1..=step).collect::<Vec<_>>());
}
