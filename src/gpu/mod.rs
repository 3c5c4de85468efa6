//! The GPU path: device and adapter selection (`context`), one pipeline per WGSL
//! entry point and the bind-once dispatches built from them (`kernels`), and the
//! graph executor that records a whole training step into one submission (`executor`).

pub mod context;
pub mod executor;
pub mod kernels;

pub use context::{BackendChoice, Gpu};
pub use executor::GpuExecutor;
pub use kernels::{Dispatch, Kernels};
