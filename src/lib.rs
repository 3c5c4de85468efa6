//! gpu-cnn: train and run a CNN for 28×28 digits through hand-written WGSL
//! compute shaders on wgpu, with a plain-Rust CPU reference for every op.
//!
//! - `model`: layers, shape inference, PyTorch-compatible parameter layout
//! - `dims`: the dimensions of one op call, shared by CPU and GPU
//! - `data`: MNIST-format IDX datasets
//! - `cpu`: the reference ops and the CPU executor
//! - `gpu`: adapter/device, WGSL pipelines, the graph executor
//! - `executor`: the interface both executors implement
//! - `train`: the training loop and evaluation
//! - `metrics_log`: reading a run's metrics.jsonl back
//! - `plot`: training curves, confusion matrices and run comparisons as PNG
//! - `serve`: the web page and JSON API of `gpu-cnn serve`, and its batching worker

pub mod arch;
pub mod bench;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod dims;
pub mod executor;
pub mod files;
pub mod gpu;
pub mod metrics_log;
pub mod model;
pub mod plot;
pub mod preprocess;
pub mod rng;
pub mod schedule;
pub mod serve;
pub mod train;
