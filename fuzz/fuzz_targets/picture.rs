//! Picture preprocessing: `preprocess::load_digit_bytes` (decode, EXIF orientation, prepare).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use gpu_cnn::preprocess;

fuzz_target!(|data: &[u8]| {
    match preprocess::load_digit_bytes(Path::new("fuzz.img"), data) {
        Ok(d) => assert!(d.iter().all(|x| (0.0..=1.0).contains(x))),
        Err(e) => assert!(format!("{e:#}").contains("fuzz.img"), "{e:#}"),
    }
});
