//! The `--arch` parser: `arch::parse`, with shape inference and the model bounds.
//! Input: one byte choosing the input shape, then the spec (UTF-8, lossily).
#![no_main]
use libfuzzer_sys::fuzz_target;

use gpu_cnn::arch;
use gpu_cnn::model::{Shape, MAX_ELEMENTS};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, spec)) = data.split_first() else { return };
    let input = [Shape::image(1, 28, 28), Shape::image(3, 64, 64), Shape::image(1, 4096, 1), Shape::image(0, 1, 1)]
        [pick as usize % 4];
    match arch::parse(&String::from_utf8_lossy(spec), input) {
        Ok(m) => {
            assert!(m.num_params <= MAX_ELEMENTS && m.flops_per_sample() < u64::MAX);
            assert_eq!(arch::parse(&arch::spec_of(&m), input).unwrap(), m);
        }
        Err(e) => assert!(format!("{e:#}").contains("--arch"), "{e:#}"),
    }
});
