//! The IDX dataset reader: `Dataset::from_idx_bytes`, gzipped or not.
//! Input: a 2-byte little-endian length, that many bytes of label file, then the image file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use gpu_cnn::data::Dataset;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return };
    let (labels, images) = rest.split_at((u16::from_le_bytes(*len) as usize).min(rest.len()));
    match Dataset::from_idx_bytes(Path::new("fuzz.idx3"), images, Path::new("fuzz.idx1"), labels) {
        Ok(d) => {
            assert!(!d.is_empty() && d.images.len() == d.len() * d.rows * d.cols);
            assert!(d.labels.iter().all(|&l| l <= 9));
        }
        Err(e) => assert!(format!("{e:#}").contains("fuzz.idx"), "{e:#}"),
    }
});
