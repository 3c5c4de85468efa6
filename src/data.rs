//! MNIST-format datasets: the four IDX files (gzipped or not), validated field
//! by field, kept as u8 pixels (47 MB for MNIST's training set rather than 188 MB
//! of f32) and turned into f32 batches in [0, 1] as PyTorch's `ToTensor` does.

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803; // u8 data, 3 dimensions
const LABELS_MAGIC: u32 = 0x0000_0801; // u8 data, 1 dimension
/// Refuse IDX headers that claim more than this many bytes of payload, before reading it.
const MAX_PAYLOAD: u64 = 1 << 32;

/// A labelled image set: `images` is (n, rows, cols) u8, `labels` is (n) in 0..classes.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// The MNIST copy bundled with the repository.
pub fn bundled_mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets").join("mnist")
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// Load `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]` from `dir`.
    pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
        let images = find_file(dir, &format!("{}-images-idx3-ubyte", split.prefix()))?;
        let labels = find_file(dir, &format!("{}-labels-idx1-ubyte", split.prefix()))?;
        let (rows, cols, images_data) = parse_images(&images, &read_maybe_gz(&images)?)?;
        let labels_data = parse_labels(&labels, &read_maybe_gz(&labels)?)?;
        let n = images_data.len() / (rows * cols);
        if labels_data.len() != n {
            bail!(
                "{} holds {} labels but {} holds {} images",
                labels.display(),
                labels_data.len(),
                images.display(),
                n
            );
        }
        Ok(Dataset { images: images_data, labels: labels_data, rows, cols })
    }

    /// The first `n` samples (or all, if fewer).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            images: self.images[..n * self.pixels()].to_vec(),
            labels: self.labels[..n].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Write samples `indices` as f32 in [0,1] into `images` (n,1,rows,cols) and their labels.
    pub fn batch(&self, indices: &[usize], images: &mut Vec<f32>, labels: &mut Vec<u32>) {
        let p = self.pixels();
        images.clear();
        labels.clear();
        for &i in indices {
            images.extend(self.images[i * p..(i + 1) * p].iter().map(|&b| b as f32 / 255.0));
            labels.push(self.labels[i] as u32);
        }
    }

    /// The first `n` samples as one batch (images, labels), cycling through the set
    /// when `n` exceeds it: fixed batches for tests and benchmarks.
    pub fn first_batch(&self, n: usize) -> (Vec<f32>, Vec<u32>) {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        let idx: Vec<usize> = (0..n).map(|i| i % self.len().max(1)).collect();
        self.batch(&idx, &mut images, &mut labels);
        (images, labels)
    }
}

fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{}: no {stem} or {stem}.gz (an MNIST-format dataset has four IDX files)", dir.display())
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .take(MAX_PAYLOAD + 16)
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt or truncated gzip data", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Parse an IDX3 u8 image file: magic, count, rows, cols, then count*rows*cols bytes exactly.
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<(usize, usize, Vec<u8>)> {
    let p = path.display();
    if bytes.len() < 16 {
        bail!("{p}: {} bytes is too short for an IDX image header (16 bytes)", bytes.len());
    }
    let magic = be_u32(bytes, 0);
    if magic != IMAGES_MAGIC {
        bail!("{p}: magic number {magic:#010x} is not an IDX u8 image file ({IMAGES_MAGIC:#010x})");
    }
    let (n, rows, cols) = (be_u32(bytes, 4) as u64, be_u32(bytes, 8) as u64, be_u32(bytes, 12) as u64);
    if rows == 0 || cols == 0 {
        bail!("{p}: images of {rows}x{cols} pixels");
    }
    let want = n * rows * cols;
    if want > MAX_PAYLOAD {
        bail!("{p}: header claims {n} images of {rows}x{cols}, {want} bytes, more than the {MAX_PAYLOAD} allowed");
    }
    let got = bytes.len() as u64 - 16;
    if got != want {
        bail!("{p}: header says {n} images of {rows}x{cols} = {want} bytes of pixels, but the file has {got}");
    }
    Ok((rows as usize, cols as usize, bytes[16..].to_vec()))
}

/// Parse an IDX1 u8 label file: magic, count, then count labels, each 0..=9.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let p = path.display();
    if bytes.len() < 8 {
        bail!("{p}: {} bytes is too short for an IDX label header (8 bytes)", bytes.len());
    }
    let magic = be_u32(bytes, 0);
    if magic != LABELS_MAGIC {
        bail!("{p}: magic number {magic:#010x} is not an IDX u8 label file ({LABELS_MAGIC:#010x})");
    }
    let n = be_u32(bytes, 4) as u64;
    let got = bytes.len() as u64 - 8;
    if got != n {
        bail!("{p}: header says {n} labels, but the file has {got} bytes of labels");
    }
    if let Some(i) = bytes[8..].iter().position(|&l| l > 9) {
        bail!("{p}: label {} at index {i} is outside 0..=9", bytes[8 + i]);
    }
    Ok(bytes[8..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn bundled_mnist_loads_with_published_counts() {
        let test = Dataset::load(&bundled_mnist_dir(), Split::Test).unwrap();
        assert_eq!((test.len(), test.rows, test.cols), (10_000, 28, 28));
        let mut counts = [0usize; 10];
        for &l in &test.labels {
            counts[l as usize] += 1;
        }
        assert_eq!(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
        let mut imgs = Vec::new();
        let mut labels = Vec::new();
        test.batch(&[0, 1], &mut imgs, &mut labels);
        assert_eq!(imgs.len(), 2 * 784);
        assert!(imgs.iter().all(|&x| (0.0..=1.0).contains(&x)));
        assert_eq!(labels, vec![7, 2]); // the first two MNIST test digits
    }

    #[test]
    fn bad_headers_are_named() {
        let p = Path::new("x.idx");
        let mut ok = header(IMAGES_MAGIC, &[2, 2, 2]);
        ok.extend([0u8; 8]);
        assert!(parse_images(p, &ok).is_ok());
        let e = parse_images(p, &header(0x0803_0000, &[1, 1, 1])).unwrap_err().to_string();
        assert!(e.contains("x.idx") && e.contains("magic"), "{e}");
        let e = parse_images(p, &ok[..ok.len() - 1]).unwrap_err().to_string();
        assert!(e.contains("8 bytes") && e.contains("7"), "{e}");
        let e = parse_images(p, &header(IMAGES_MAGIC, &[1, 0, 28])).unwrap_err().to_string();
        assert!(e.contains("0x28"), "{e}");
        let e = parse_images(p, &ok[..10]).unwrap_err().to_string();
        assert!(e.contains("too short"), "{e}");
        let mut lab = header(LABELS_MAGIC, &[3]);
        lab.extend([1, 12, 3]);
        let e = parse_labels(p, &lab).unwrap_err().to_string();
        assert!(e.contains("label 12 at index 1"), "{e}");
        let e = parse_labels(p, &lab[..10]).unwrap_err().to_string();
        assert!(e.contains("3 labels") && e.contains("2 bytes"), "{e}");
    }

    #[test]
    fn missing_dir_names_the_file() {
        let e = Dataset::load(Path::new("/nonexistent"), Split::Train).unwrap_err().to_string();
        assert!(e.contains("/nonexistent") && e.contains("train-images-idx3-ubyte"), "{e}");
    }
}
