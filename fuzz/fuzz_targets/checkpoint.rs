//! The checkpoint loader: `checkpoint::load_bytes`, safetensors plus gpu-cnn metadata.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

use gpu_cnn::checkpoint;
use gpu_cnn::model::Model;

fuzz_target!(|data: &[u8]| {
    static SEED: OnceLock<Model> = OnceLock::new();
    match checkpoint::load_bytes(Path::new("fuzz.safetensors"), data, SEED.get_or_init(Model::seed)) {
        Ok(c) => {
            assert_eq!(c.params.len(), c.model.num_params);
            assert!(c.params.iter().all(|x| x.is_finite()));
            if let Some((opt, state)) = &c.optimizer {
                assert_eq!(state.vectors.len(), opt.state_vectors() * c.model.num_params);
                checkpoint::check_optimizer(opt).unwrap();
            }
            if let Some(p) = c.position {
                let done = (p.epoch as u64).checked_add(p.batch_in_epoch as u64);
                assert!(p.batch_size >= 1 && done.is_some_and(|d| d <= p.global_step));
            }
        }
        Err(e) => assert!(format!("{e:#}").contains("fuzz.safetensors"), "{e:#}"),
    }
});
