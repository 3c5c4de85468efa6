//! Shared by the test binaries: one GPU per backend per test binary, the
//! run-once-per-backend macro, random data and tolerance checks.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use gpu_cnn::gpu::{BackendChoice, Gpu};
use gpu_cnn::rng::Rng;

/// A backend's device, held by one test at a time: wgpu's GL backend panics when
/// another thread holds its context for over a second (a long dispatch on llvmpipe
/// does), and both software drivers already use every core for a single test.
pub struct Lease {
    pub gpu: Arc<Gpu>,
    _turn: MutexGuard<'static, ()>,
}

/// CI must find both software adapters (lavapipe and llvmpipe); a missing one fails the run.
/// Off CI a missing adapter skips the test with a loud message.
pub fn gpu(choice: BackendChoice) -> Option<Lease> {
    static VULKAN_TURN: Mutex<()> = Mutex::new(());
    static GL_TURN: Mutex<()> = Mutex::new(());
    let turn = match choice {
        BackendChoice::Vulkan => &VULKAN_TURN,
        _ => &GL_TURN,
    };
    // A failed test poisons the mutex; the device itself is still fine.
    let turn = turn.lock().unwrap_or_else(|e| e.into_inner());
    static VULKAN: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    static GL: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    let cell = match choice {
        BackendChoice::Vulkan => &VULKAN,
        BackendChoice::Gl => &GL,
        other => panic!("tests run on vulkan and gl, not {other}"),
    };
    let g = cell
        .get_or_init(|| match Gpu::new(choice) {
            Ok(g) => Some(Arc::new(g)),
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                    panic!("CI requires a {choice} adapter: {e:#}");
                }
                eprintln!("\n*** SKIPPED: no {choice} adapter on this machine ({e:#}) ***\n");
                None
            }
        })
        .clone()?;
    let want = match choice {
        BackendChoice::Vulkan => wgpu::Backend::Vulkan,
        _ => wgpu::Backend::Gl,
    };
    assert_eq!(g.info.backend, want, "asked for {choice}, got {}", g.describe());
    Some(Lease { gpu: g, _turn: turn })
}

/// One test body, run once per backend: `per_backend!(name, body)` makes
/// `name::vulkan` and `name::gl`, each calling `body(&Arc<Gpu>)`.
#[macro_export]
macro_rules! per_backend {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn vulkan() {
                if let Some(lease) = common::gpu(gpu_cnn::gpu::BackendChoice::Vulkan) {
                    ($body)(&lease.gpu);
                }
            }
            #[test]
            fn gl() {
                if let Some(lease) = common::gpu(gpu_cnn::gpu::BackendChoice::Gl) {
                    ($body)(&lease.gpu);
                }
            }
        }
    };
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
