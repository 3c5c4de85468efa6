//! The GPU path. From the device to a training step:
//! - `context`: adapter selection and the device (`Gpu`), buffer helpers;
//! - `shader`: the WGSL files and their `#include` composition;
//! - `engine`: the GEMM engines (tiled, subgroup; coop in mixed precision) as data;
//! - `dispatch`: `Dispatch`, grid folding, the launcher every op family uses;
//! - `ops`: one file per op family (uniform, pipelines, launchers);
//! - `params`: the parameter buffer, and its texture copy for engines that read one;
//! - `kernels`: every family's pipelines for one device and engine;
//! - `plan`: the memory plan, from the model alone;
//! - `backward`: the backward pass, for the trainer and the explainer;
//! - `inference`, `trainer`, `explainer`: the executors;
//! - `selfcheck`: a mixed-precision engine's products against the CPU reference,
//!   when a device opens with it;
//! - `warmup`: a software Vulkan driver's kernels compiled on a second core.

pub mod backward;
pub mod context;
pub mod dispatch;
pub mod engine;
pub mod explainer;
pub mod inference;
pub mod kernels;
pub mod ops;
pub mod params;
pub mod plan;
pub mod selfcheck;
pub mod shader;
pub mod trainer;
pub mod warmup;

pub use context::{BackendChoice, Gpu};
pub use dispatch::Dispatch;
pub use engine::{GemmEngine, Precision};
pub use explainer::GpuExplainer;
pub use inference::GpuInference;
pub use kernels::Kernels;
pub use trainer::GpuTrainer;
