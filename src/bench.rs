//! Measuring the engine: per-op GPU timings of a training step (timestamp queries
//! where the adapter has them, wall time otherwise) and end-to-end rates.

use anyhow::{anyhow, Result};
use std::time::Instant;

use crate::gpu::{Dispatch, Gpu};

/// One entry point's measured cost inside a training step.
#[derive(Debug, Clone)]
pub struct OpTiming {
    pub name: String,
    pub layer: String,
    pub workgroups: [u32; 3],
    pub seconds: f64,
    pub flops: u64,
    pub bytes: u64,
}

impl OpTiming {
    pub fn gflops(&self) -> f64 {
        self.flops as f64 / self.seconds / 1e9
    }

    pub fn gbytes_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e9
    }

    fn of(d: &Dispatch, seconds: f64) -> Self {
        OpTiming {
            name: d.name.clone(),
            layer: d.layer.clone(),
            workgroups: d.workgroups(),
            seconds,
            flops: d.flops,
            bytes: d.bytes,
        }
    }
}

/// Wall time of each dispatch alone: `reps` back-to-back copies of it, then a wait.
/// Includes the per-dispatch overhead a training step pays too, and the dispatch's
/// texture fills, which `record_all` records before each copy.
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
        out.push(OpTiming::of(d, seconds));
    }
    Ok(out)
}

/// GPU time of each dispatch, from timestamps written around it (one compute pass per
/// dispatch, all in one submission), averaged over `reps` submissions.
/// None if the device has no timestamp queries.
pub fn timestamp_dispatches(gpu: &Gpu, dispatches: &[&Dispatch], reps: usize) -> Result<Option<Vec<OpTiming>>> {
    if !gpu.has_timestamps() || dispatches.is_empty() {
        return Ok(None);
    }
    let n = dispatches.len() as u32;
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("op timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count: 2 * n,
    });
    let bytes = 2 * n as u64 * 8;
    let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamps"),
        size: bytes.next_multiple_of(wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT),
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = gpu.staging(bytes);
    let period_ns = gpu.queue.get_timestamp_period() as f64;
    let mut total = vec![0f64; dispatches.len()];
    for rep in 0..=reps {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for (i, d) in dispatches.iter().enumerate() {
            // Untimed: the timestamps bracket the pass (GPUs read no texture copies).
            d.record_fills(&mut enc);
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&d.name),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            d.record(&mut pass);
        }
        enc.resolve_query_set(&queries, 0..2 * n, &resolve, 0);
        let ticks: Vec<u64> = gpu.read_with(enc, &resolve, 0, 2 * n as usize, &staging)?;
        if rep == 0 {
            continue; // warm-up
        }
        for (i, t) in total.iter_mut().enumerate() {
            let dt = ticks[2 * i + 1].checked_sub(ticks[2 * i]).ok_or_else(|| anyhow!("timestamps went backwards"))?;
            *t += dt as f64 * period_ns * 1e-9;
        }
    }
    Ok(Some(dispatches.iter().zip(total).map(|(d, t)| OpTiming::of(d, t / reps as f64)).collect()))
}
