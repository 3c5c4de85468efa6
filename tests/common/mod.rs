//! Shared by the test binaries: one GPU per backend per test binary, the
//! run-once-per-backend macro, every kernel set a device can run, random data,
//! tolerance checks, MNIST-format files, and running the `gpu-cnn` binary.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use gpu_cnn::gpu::{BackendChoice, GemmEngine, Gpu, Kernels, Precision};
use gpu_cnn::rng::Rng;

/// A backend's device, held by one test at a time: wgpu's GL backend panics when
/// another thread holds its context for over a second (a long dispatch on llvmpipe
/// does), and both software drivers already use every core for a single test.
pub struct Lease {
    pub gpu: Arc<Gpu>,
    _turn: MutexGuard<'static, ()>,
}

/// The backends CI must find (lavapipe's Vulkan and llvmpipe's GL): a missing one
/// fails the run there. Metal and DX12 run on their own platforms (`per_backend!`
/// ignores them elsewhere) and skip loudly on a machine of that platform without one.
pub fn required_in_ci(choice: BackendChoice) -> bool {
    matches!(choice, BackendChoice::Vulkan | BackendChoice::Gl)
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The device of `choice` with its best GEMM engine (whatever GPU_CNN_GEMM says:
/// the library reads no environment), or None, loudly, when the machine lacks it.
pub fn gpu(choice: BackendChoice) -> Option<Lease> {
    static TURNS: [Mutex<()>; 4] = [Mutex::new(()), Mutex::new(()), Mutex::new(()), Mutex::new(())];
    static DEVICES: [OnceLock<Option<Arc<Gpu>>>; 4] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (i, want) = match choice {
        BackendChoice::Vulkan => (0, wgpu::Backend::Vulkan),
        BackendChoice::Gl => (1, wgpu::Backend::Gl),
        BackendChoice::Metal => (2, wgpu::Backend::Metal),
        BackendChoice::Dx12 => (3, wgpu::Backend::Dx12),
        BackendChoice::Auto => panic!("tests name their backend"),
    };
    // A failed test poisons the mutex; the device itself is still fine.
    let turn = TURNS[i].lock().unwrap_or_else(|e| e.into_inner());
    let g = DEVICES[i]
        .get_or_init(|| match Gpu::new(choice, None) {
            Ok(g) => Some(Arc::new(g)),
            Err(e) if in_ci() && required_in_ci(choice) => panic!("CI requires a {choice} adapter: {e:#}"),
            Err(e) => {
                eprintln!("\n*** SKIPPED: no {choice} adapter on this machine ({e:#}) ***\n");
                None
            }
        })
        .clone()?;
    assert_eq!(g.info.backend, want, "asked for {choice}, got {}", g.describe());
    Some(Lease { gpu: g, _turn: turn })
}

/// One test body, run once per backend: `per_backend!(name, body)` makes
/// `name::vulkan`, `name::gl`, `name::metal` and `name::dx12`, each calling
/// `body(&Arc<Gpu>)` on that backend's device. Metal's and DX12's are ignored where
/// the platform cannot have them, so that a test reported `ok` ran.
#[macro_export]
macro_rules! per_backend {
    ($name:ident, $body:expr) => {
        per_backend!(@ $name, [], $body);
    };
    // A test that cannot run on GL, where its copy is reported as ignored, with why.
    ($name:ident, gl ignored: $why:literal, $body:expr) => {
        per_backend!(@ $name, [#[ignore = $why]], $body);
    };
    (@ $name:ident, [$(#[$gl:meta])*], $body:expr) => {
        mod $name {
            use super::*;
            fn on(choice: gpu_cnn::gpu::BackendChoice) {
                if let Some(lease) = common::gpu(choice) {
                    ($body)(&lease.gpu);
                }
            }
            #[test]
            fn vulkan() {
                on(gpu_cnn::gpu::BackendChoice::Vulkan)
            }
            #[test]
            $(#[$gl])*
            fn gl() {
                on(gpu_cnn::gpu::BackendChoice::Gl)
            }
            #[test]
            #[cfg_attr(not(target_vendor = "apple"), ignore = "Metal exists only on Apple platforms")]
            fn metal() {
                on(gpu_cnn::gpu::BackendChoice::Metal)
            }
            #[test]
            #[cfg_attr(not(windows), ignore = "DX12 exists only on Windows")]
            fn dx12() {
                on(gpu_cnn::gpu::BackendChoice::Dx12)
            }
        }
    };
}

/// A device on `g`'s adapter running the coop (tensor-core) engine, where the adapter
/// reports what that engine needs; None, said aloud, where it does not. Where it does,
/// the device must open, its start-up check of the mixed products included: a coop
/// engine that fails there fails the test instead of counting as absent.
pub fn coop_device(g: &Gpu) -> Option<Arc<Gpu>> {
    let choice = match g.info.backend {
        wgpu::Backend::Vulkan => BackendChoice::Vulkan,
        wgpu::Backend::Metal => BackendChoice::Metal,
        _ => return None,
    };
    let adapter = Gpu::pick_adapter(choice).unwrap();
    assert_eq!(adapter.get_info(), g.info, "{}: the coop engine would run on another adapter", g.describe());
    if let Err(e) = GemmEngine::Coop.check(&adapter) {
        eprintln!("{}: no coop engine here ({e:#})", g.describe());
        return None;
    }
    match Gpu::open_matching(&g.info, GemmEngine::Coop) {
        Ok(coop) => Some(Arc::new(coop)),
        Err(e) => panic!("{}: it has tensor cores, but the coop engine fails: {e:#}", g.describe()),
    }
}

/// A kernel set and the name a failure message gives it: backend, engine, and
/// whether its dispatches fold over two dimensions after 3 workgroups (so every
/// entry point's 2-D path runs on small shapes).
pub struct KernelSet {
    pub label: String,
    pub kernels: Kernels,
}

/// How a set's kernel-row products load their weights, as its label says.
pub fn operands_from(textures: bool) -> &'static str {
    if textures {
        "operands from textures"
    } else {
        "operands from buffers"
    }
}

/// The label of a set that chooses tiles as on a GPU, on a CPU driver.
pub const GPU_TILES: &str = "a GPU's tiles";

/// Every f32 GEMM engine the device can run, each plain and folded; built once per
/// backend. On a CPU driver, an engine with tiles such a driver leaves out (the tiled
/// engine's wide one) gets a third set with a GPU's tile rules, so that every tile
/// runs on Vulkan and GL; an engine with kernel-row products, one whose products
/// load their operands the other way (`GemmEngine::operands_in_textures`). The
/// mixed-precision engines have a test and a tolerance of their own (gpu_ops.rs
/// `conv2d_mixed_precision`).
pub fn kernel_sets(g: &Gpu) -> &'static [KernelSet] {
    static SETS: [OnceLock<Vec<KernelSet>>; 4] = [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = match g.info.backend {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Gl => 1,
        wgpu::Backend::Metal => 2,
        _ => 3,
    };
    SETS[i].get_or_init(|| {
        let mut sets = Vec::new();
        for &engine in g.engines.iter().filter(|e| e.precision() == Precision::F32) {
            for (variant, max) in [("", g.limits.max_compute_workgroups_per_dimension), (", folded", 3)] {
                sets.push(KernelSet {
                    label: format!("{:?}/{engine}{variant}", g.info.backend),
                    kernels: g.kernels_for(engine, max).unwrap(),
                });
            }
            // The kernel-row products load their operands from texture copies on AMD
            // CPUs and from the buffers elsewhere: the other way too.
            if engine.spec().kernel_row_products {
                let textures = !engine.operands_in_textures(g.info.device_type);
                let max = g.limits.max_compute_workgroups_per_dimension;
                sets.push(KernelSet {
                    label: format!("{:?}/{engine}, {}", g.info.backend, operands_from(textures)),
                    kernels: Kernels::with_operand_loads(&g.device, g.info.device_type, engine, max, textures),
                });
            }
            if engine.usable_tiles(g.info.device_type) < engine.spec().tiles.len() {
                let (gpu, max) = (wgpu::DeviceType::DiscreteGpu, g.limits.max_compute_workgroups_per_dimension);
                sets.push(KernelSet {
                    label: format!("{:?}/{engine}, {GPU_TILES}", g.info.backend),
                    kernels: Kernels::new(&g.device, gpu, engine, max),
                });
            }
        }
        sets
    })
}

pub fn uniform(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(lo, hi) as f32).collect()
}

pub fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Largest |got - want| and whether every element satisfies |got - want| <= atol + rtol*|want|.
/// Panics naming the first failing element; returns the largest error for the report.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut max_err = 0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}: element {i}: got {g}, want {w} (|Δ| = {err:e} > {atol:e} + {rtol:e}·|want|)"
        );
        max_err = max_err.max(err);
    }
    max_err
}

/// As `assert_close` with a bound of its own for each element: |got - want| <= bound[i].
pub fn assert_within(what: &str, got: &[f32], want: &[f64], bound: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(bound.len(), want.len(), "{what}: bounds");
    let mut max_err = 0f64;
    for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= b, "{what}: element {i}: got {g}, want {w} (|Δ| = {err:e} > {b:e})");
        max_err = max_err.max(err);
    }
    max_err
}

/// The bytes of an IDX file: magic (type 8 = u8, `dims.len()` dimensions), the
/// dimensions big-endian, then `data`.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    idx_bytes_with_magic(0x800 | dims.len() as u32, dims, data)
}

/// As `idx_bytes`, with any magic number (to write broken files).
pub fn idx_bytes_with_magic(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

/// Write a split (`train` or `t10k`) of n rows×cols images into `dir` in MNIST's file names.
pub fn write_split(dir: &Path, split: &str, rows: u32, cols: u32, images: &[u8], labels: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let n = labels.len() as u32;
    std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), idx_bytes(&[n, rows, cols], images)).unwrap();
    std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), idx_bytes(&[n], labels)).unwrap();
}

/// A small MNIST-format test split (the first `n` test images), for quick evals.
pub fn small_test_set(dir: &Path, n: usize) {
    let test =
        gpu_cnn::data::Dataset::load(&gpu_cnn::data::bundled_mnist_dir(), gpu_cnn::data::Split::Test).unwrap().take(n);
    write_split(dir, "t10k", 28, 28, &test.images, &test.labels);
}

/// Every file of `dir` with its bytes, by name: equal before and after a command
/// that must write nothing there.
pub fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|f| (f.clone(), std::fs::read(f).unwrap())).collect()
}

/// The `gpu-cnn` binary, quiet about Mesa's device-select layer; a hang (a FIFO
/// read, an endless epoch) fails the test instead of stalling it.
pub fn bin() -> Command {
    let mut c = Command::cargo_bin("gpu-cnn").unwrap();
    c.env("NODEVICE_SELECT", "1").timeout(Duration::from_secs(600));
    c
}

/// Vulkan in CI (lavapipe); off CI, whatever adapter there is.
pub fn backend() -> &'static str {
    if in_ci() {
        "vulkan"
    } else {
        "auto"
    }
}

/// What a finished command left: how it ended (an exit code, or the signal that
/// ended it, which its Display names), stdout and stderr.
pub struct Outcome {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `c`, which must not panic, whatever its exit.
pub fn outcome(c: &mut Command) -> Outcome {
    let out = c.output().unwrap();
    let o = Outcome {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert!(!o.stderr.contains("panicked"), "panicked:\n{}", o.stderr);
    o
}

impl Outcome {
    /// The command succeeded.
    pub fn ok(self) -> Self {
        let (status, out, err) = (self.status, &self.stdout, &self.stderr);
        assert_eq!(status.code(), Some(0), "command failed ({status})\nstdout:\n{out}\nstderr:\n{err}");
        self
    }

    /// It exited with `code` (1 for a refused input, 2 for a refused argument), its
    /// stderr containing every one of `needles`.
    pub fn exits_with(self, code: i32, needles: &[&str]) -> Self {
        let (status, out, err) = (self.status, &self.stdout, &self.stderr);
        assert_eq!(status.code(), Some(code), "expected exit {code}, got {status}\nstdout:\n{out}\nstderr:\n{err}");
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks '{n}':\n{}", self.stderr);
        }
        self
    }

    /// A clean failure (exit 1, not a panic's 101) naming every one of `needles`.
    pub fn fails_with(self, needles: &[&str]) -> Self {
        self.exits_with(1, needles)
    }
}

/// Runs `c`, which must succeed; returns its stdout.
pub fn stdout_of(c: &mut Command) -> String {
    outcome(c).ok().stdout
}

/// Runs `c`, which must exit with `code` and no panic, its stderr containing every
/// one of `needles`. Returns stderr.
pub fn exits_with(c: &mut Command, code: i32, needles: &[&str]) -> String {
    outcome(c).exits_with(code, needles).stderr
}

/// Runs `c`, which must fail cleanly (exit 1, not a panic's 101) naming every one of `needles`.
pub fn fails_with(c: &mut Command, needles: &[&str]) -> String {
    exits_with(c, 1, needles)
}

/// A short training run into `out`: `steps` steps of 8, logging every 2. Returns stdout.
pub fn train(out: &Path, steps: u64, extra: &[&str]) -> String {
    let mut c = bin();
    c.args(["train", "--steps", &steps.to_string(), "--batch-size", "8", "--log-every", "2", "--backend", backend()]);
    c.arg("--out").arg(out).args(extra);
    stdout_of(&mut c)
}

/// The `gpu-cnn` binary as a std Command, for runs a test signals or kills mid-way.
pub fn bin_std() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-cnn"));
    c.env("NODEVICE_SELECT", "1");
    c
}

/// A model small enough that the CPU reference trains a step of 8 in about a millisecond.
pub const TINY: &str = "c4k3 relu pool2 flat fc10";

/// A `gpu-cnn` process running in the background, its output read line by line as it comes.
pub struct Running {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line so far, stdout and stderr interleaved as they arrived.
    pub seen: Vec<String>,
}

impl Running {
    /// Start `c` with both outputs piped.
    pub fn start(mut c: std::process::Command) -> Running {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines().map_while(|l| l.ok()) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running { child, lines, seen: Vec::new() }
    }

    /// Wait (at most 5 minutes) for a line containing `needle`; panics if the process
    /// ends first. Returns the line.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no line with '{needle}' ({e}); output:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Send signal `name` (`INT`, `TERM`, `HUP`, `KILL`) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} {} failed", self.child.id());
    }

    /// Wait (at most 5 minutes) for the process to end; its status and all its output.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                self.child.kill().ok();
                panic!("still running after 5 minutes; output:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The readers end with the pipes.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

/// `gpu-cnn train` on the CPU reference with the tiny model, batches of 8, logging
/// every step, into `out`.
pub fn tiny_train(out: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = bin_std();
    c.args(["train", "--arch", TINY, "--backend", "cpu", "--batch-size", "8", "--log-every", "1", "--out"])
        .arg(out)
        .args(extra);
    c
}

/// The steps of a run's metrics.jsonl training points, in file order; panics on a line
/// that is not a record (a truncated last line included).
pub fn metric_steps(dir: &Path) -> Vec<u64> {
    let log = gpu_cnn::metrics_log::MetricsLog::read(&dir.join("metrics.jsonl")).unwrap();
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    log.records
        .iter()
        .filter_map(|r| match r {
            gpu_cnn::metrics_log::Record::Train { step, .. } => Some(*step),
            _ => None,
        })
        .collect()
}
