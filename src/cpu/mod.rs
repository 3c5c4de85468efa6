//! The CPU reference path: plain-Rust ops and an executor built on them.

pub mod executor;
pub mod ops;

pub use executor::CpuExecutor;
