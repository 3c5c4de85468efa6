//! The CPU reference path: plain-Rust ops and the executors built on them.

pub mod executor;
pub mod ops;

pub use executor::{CpuInference, CpuTrainer};
