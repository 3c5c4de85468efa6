//! Measuring the engine: per-op timings of a training step and end-to-end rates.

use anyhow::Result;
use std::time::Instant;

use crate::gpu::{Dispatch, Gpu};

/// One entry point's measured cost inside a training step.
#[derive(Debug, Clone)]
pub struct OpTiming {
    pub name: String,
    pub workgroups: [u32; 3],
    pub seconds: f64,
    pub flops: u64,
}

impl OpTiming {
    pub fn gflops(&self) -> f64 {
        self.flops as f64 / self.seconds / 1e9
    }
}

/// Wall time of each dispatch alone: `reps` back-to-back copies in one pass, then a wait.
/// Includes the per-dispatch overhead, which is what a training step pays too.
pub fn time_dispatches(gpu: &Gpu, dispatches: &[&Dispatch], reps: usize) -> Result<Vec<OpTiming>> {
    let mut out = Vec::new();
    for d in dispatches {
        let run = |reps: usize| -> Result<f64> {
            let t = Instant::now();
            gpu.run(&vec![*d; reps]);
            gpu.device.poll(wgpu::PollType::wait_indefinitely())?;
            Ok(t.elapsed().as_secs_f64())
        };
        run(1)?; // warm-up
        let seconds = run(reps)? / reps as f64;
        out.push(OpTiming {
            name: d.name.to_string(),
            workgroups: d.workgroups(),
            seconds,
            flops: d.flops,
        });
    }
    Ok(out)
}
