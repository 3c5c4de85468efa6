//! A run's two weight files in its output directory: `checkpoint.safetensors`
//! (weights, optimizer state and position, for `--resume`) and
//! `model.safetensors` (weights only, a PyTorch state_dict).

use anyhow::Result;
use std::path::{Path, PathBuf};

use crate::checkpoint::{self, Position};
use crate::executor::{Optimizer, Trainer};
use crate::model::Model;

pub struct Checkpoints {
    pub checkpoint: PathBuf,
    pub weights: PathBuf,
    model: Model,
    optimizer: Optimizer,
}

impl Checkpoints {
    pub fn new(dir: &Path, model: &Model, optimizer: Optimizer) -> Self {
        Checkpoints {
            checkpoint: dir.join("checkpoint.safetensors"),
            weights: dir.join("model.safetensors"),
            model: model.clone(),
            optimizer,
        }
    }

    /// Write both files (each atomically) from the trainer's state at `pos`.
    pub fn save(&self, trainer: &mut dyn Trainer, pos: Position) -> Result<()> {
        let params = trainer.params()?;
        let state = trainer.optimizer_state()?;
        checkpoint::save(&self.checkpoint, &self.model, &params, Some((&self.optimizer, &state)), Some(&pos))?;
        checkpoint::save(&self.weights, &self.model, &params, None, None)
    }
}
