//! MNIST-format datasets: the four IDX files (gzipped or not), validated field
//! by field, kept as u8 pixels (47 MB for MNIST's training set rather than 188 MB
//! of f32) and turned into f32 batches in [0, 1] as PyTorch's `ToTensor` does.

use anyhow::{bail, Context, Result};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::files::read_file;
use crate::model::Model;

const IMAGES_MAGIC: u32 = 0x0000_0803; // u8 data, 3 dimensions
const LABELS_MAGIC: u32 = 0x0000_0801; // u8 data, 1 dimension
/// Refuse IDX headers that claim more than this many bytes of payload, before reading it.
pub const MAX_PAYLOAD: u64 = 1 << 32;
/// The largest batch a run may ask for: above what a GPU's 2^24-element tensors allow
/// (so the executor names the tensor that is too large), and small enough that no batch
/// size times a model's tensor size (at most 2^28) overflows.
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// A batch size given on the command line: a whole number in 1..=MAX_BATCH_SIZE.
pub fn parse_batch_size(s: &str) -> std::result::Result<usize, String> {
    // The caller quotes `s`: clap does, and a checkpoint's metadata may be megabytes.
    let ok = s.parse().ok().filter(|n| (1..=MAX_BATCH_SIZE).contains(n));
    ok.ok_or_else(|| format!("a batch size is a whole number in 1..={MAX_BATCH_SIZE}"))
}

/// A labelled image set: `images` is (n, rows, cols) u8, `labels` is (n) in 0..classes,
/// with the files they came from (for error messages). Never empty when loaded.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    pub images_file: PathBuf,
    pub labels_file: PathBuf,
    /// Tells datasets apart (every load and `take` gets its own), so an executor that
    /// keeps a dataset in GPU memory knows when it is handed another one.
    pub id: u64,
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The model's input value of each pixel byte: byte / 255. Computed once, on the
/// CPU: the GPU's gather reads this very table, so both paths feed the same floats.
pub fn pixel_values() -> [f32; 256] {
    std::array::from_fn(|b| b as f32 / 255.0)
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
        // A gzip file is no larger than what it holds, give or take its framing.
        let max = MAX_PAYLOAD + (1 << 20);
        Dataset::from_idx_bytes(&images, &read_file(&images, max)?, &labels, &read_file(&labels, max)?)
    }

    /// A dataset from the bytes of an IDX image file and an IDX label file (each gzipped
    /// or not), named by `images_file` and `labels_file` in errors: counts must agree
    /// and there must be at least one sample.
    pub fn from_idx_bytes(images_file: &Path, images: &[u8], labels_file: &Path, labels: &[u8]) -> Result<Dataset> {
        let (head, images) = read_idx(images_file, images, Idx::Images)?;
        let (label_head, labels) = read_idx(labels_file, labels, Idx::Labels)?;
        if head.n == 0 {
            bail!("{}: holds no images; a dataset split needs at least one", images_file.display());
        }
        if label_head.n != head.n {
            bail!(
                "{} holds {} labels but {} holds {} images",
                labels_file.display(),
                label_head.n,
                images_file.display(),
                head.n
            );
        }
        if let Some(i) = labels.iter().position(|&l| l > 9) {
            bail!("{}: label {} at index {i} is outside 0..=9", labels_file.display(), labels[i]);
        }
        Ok(Dataset {
            images,
            labels,
            // Each at most u32::MAX, and their product at most MAX_PAYLOAD.
            rows: head.rows as usize,
            cols: head.cols as usize,
            images_file: images_file.to_path_buf(),
            labels_file: labels_file.to_path_buf(),
            id: next_id(),
        })
    }

    /// Refuse a dataset `model` cannot take: pictures of another size than its input,
    /// or a label that is not one of its outputs. Run it before any work, so a bad
    /// test split fails at the start rather than after an epoch of training.
    pub fn check_against(&self, model: &Model) -> Result<()> {
        let want = model.input;
        if (want.c, want.h, want.w) != (1, self.rows, self.cols) {
            bail!(
                "{}: pictures are {}x{} grayscale, but the model takes {}x{}x{} inputs",
                self.images_file.display(),
                self.rows,
                self.cols,
                want.c,
                want.h,
                want.w
            );
        }
        let classes = model.classes();
        if let Some(i) = self.labels.iter().position(|&l| l as usize >= classes) {
            bail!(
                "{}: label {} at index {i} is not one of the model's {classes} outputs (0..={})",
                self.labels_file.display(),
                self.labels[i],
                classes - 1
            );
        }
        Ok(())
    }

    /// The first `n` samples (or all, if fewer).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let (images, labels) = (self.images[..n * self.pixels()].to_vec(), self.labels[..n].to_vec());
        Dataset { images, labels, id: next_id(), ..self.clone() }
    }

    /// Write samples `indices` as f32 in [0,1] into `images` (n,1,rows,cols) and their labels.
    pub fn batch(&self, indices: &[usize], images: &mut Vec<f32>, labels: &mut Vec<u32>) {
        let (p, value) = (self.pixels(), pixel_values());
        images.clear();
        labels.clear();
        for &i in indices {
            images.extend(self.images[i * p..(i + 1) * p].iter().map(|&b| value[b as usize]));
            labels.push(self.labels[i] as u32);
        }
    }

    /// The first `n` samples as one batch (images, labels), cycling through the set
    /// when `n` exceeds it: fixed batches for tests and benchmarks.
    pub fn first_batch(&self, n: usize) -> (Vec<f32>, Vec<u32>) {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        self.batch(&self.first_indices(n), &mut images, &mut labels);
        (images, labels)
    }

    /// The indices of `first_batch(n)`: from the first sample on, round again if short.
    pub fn first_indices(&self, n: usize) -> Vec<usize> {
        (0..n).map(|i| i % self.len().max(1)).collect()
    }
}

fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&name);
        // Anything by that name: read_file refuses what is not a regular file, by name.
        if p.symlink_metadata().is_ok() {
            return Ok(p);
        }
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            bail!("{}: no {stem} or {stem}.gz (an MNIST-format dataset has four IDX files)", dir.display())
        }
        Ok(_) => bail!("{}: not a directory (--data takes the folder of the four IDX files)", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{}: no such directory", dir.display()),
        Err(e) => bail!("{}: {e}", dir.display()),
    }
}

/// The two kinds of IDX file a dataset has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idx {
    Images,
    Labels,
}

/// An IDX header: `n` items of `rows`x`cols` bytes (1x1 for labels), `payload` bytes in all.
#[derive(Debug, Clone, Copy)]
struct IdxHeader {
    n: u64,
    rows: u64,
    cols: u64,
    payload: u64,
}

impl Idx {
    fn header_len(self) -> usize {
        match self {
            Idx::Images => 16,
            Idx::Labels => 8,
        }
    }

    /// Parse and check the header at the start of `bytes`: magic, non-zero picture
    /// dimensions and a payload of at most `MAX_PAYLOAD`, computed without overflow.
    fn header(self, path: &Path, bytes: &[u8]) -> Result<IdxHeader> {
        let p = path.display();
        let (what, magic) = match self {
            Idx::Images => ("image", IMAGES_MAGIC),
            Idx::Labels => ("label", LABELS_MAGIC),
        };
        let Some(head) = bytes.get(..self.header_len()) else {
            bail!("{p}: {} bytes is too short for an IDX {what} header ({} bytes)", bytes.len(), self.header_len());
        };
        let field = |i: usize| u64::from(u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]));
        if field(0) != u64::from(magic) {
            bail!("{p}: magic number {:#010x} is not an IDX u8 {what} file ({magic:#010x})", field(0));
        }
        let (n, rows, cols) = match self {
            Idx::Images => (field(4), field(8), field(12)),
            Idx::Labels => (field(4), 1, 1),
        };
        if rows == 0 || cols == 0 {
            bail!("{p}: images of {rows}x{cols} pixels");
        }
        let payload = n.checked_mul(rows).and_then(|x| x.checked_mul(cols)).filter(|&x| x <= MAX_PAYLOAD);
        let Some(payload) = payload else {
            bail!("{p}: header claims {n} {what}s of {rows}x{cols} bytes, more than the {MAX_PAYLOAD} bytes allowed");
        };
        Ok(IdxHeader { n, rows, cols, payload })
    }
}

/// The header and the payload of an IDX file, gzipped or not. A gzip stream (of one
/// member or several) is decompressed only as far as its header says: at most the
/// payload it implies and one byte more, so a small file cannot expand to gigabytes.
fn read_idx(path: &Path, raw: &[u8], kind: Idx) -> Result<(IdxHeader, Vec<u8>)> {
    let p = path.display();
    let mismatch = |h: IdxHeader, got: &str| {
        let items = match kind {
            Idx::Images => format!("{} images of {}x{} = {} bytes of pixels", h.n, h.rows, h.cols, h.payload),
            Idx::Labels => format!("{} labels", h.n),
        };
        anyhow::anyhow!("{p}: header says {items}, but the file has {got}")
    };
    if !raw.starts_with(&[0x1f, 0x8b]) {
        let h = kind.header(path, raw)?;
        let got = (raw.len() - kind.header_len()) as u64;
        if got != h.payload {
            return Err(mismatch(h, &format!("{got} bytes of {}", what_payload(kind))));
        }
        return Ok((h, raw[kind.header_len()..].to_vec()));
    }
    let corrupt = || format!("{p}: corrupt or truncated gzip data");
    let mut gz = MultiGzDecoder::new(raw);
    let mut head = Vec::with_capacity(kind.header_len());
    (&mut gz).take(kind.header_len() as u64).read_to_end(&mut head).with_context(corrupt)?;
    let h = kind.header(path, &head)?;
    // Grown as data arrives, not reserved from the header's claim.
    let mut payload = Vec::new();
    (&mut gz).take(h.payload + 1).read_to_end(&mut payload).with_context(corrupt)?;
    let got = payload.len() as u64;
    if got > h.payload {
        return Err(mismatch(h, "more than that once decompressed"));
    }
    if got < h.payload {
        return Err(mismatch(h, &format!("{got} bytes of {} once decompressed", what_payload(kind))));
    }
    Ok((h, payload))
}

fn what_payload(kind: Idx) -> &'static str {
    match kind {
        Idx::Images => "pixels",
        Idx::Labels => "labels",
    }
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
        let images = |b: &[u8]| read_idx(p, b, Idx::Images).map(|_| ()).unwrap_err().to_string();
        let mut ok = header(IMAGES_MAGIC, &[2, 2, 2]);
        ok.extend([0u8; 8]);
        assert!(read_idx(p, &ok, Idx::Images).is_ok());
        let e = images(&header(0x0803_0000, &[1, 1, 1]));
        assert!(e.contains("x.idx") && e.contains("magic"), "{e}");
        let e = images(&ok[..ok.len() - 1]);
        assert!(e.contains("8 bytes") && e.contains("7"), "{e}");
        let e = images(&header(IMAGES_MAGIC, &[1, 0, 28]));
        assert!(e.contains("0x28"), "{e}");
        let e = images(&ok[..10]);
        assert!(e.contains("too short"), "{e}");
        let mut lab = header(LABELS_MAGIC, &[3]);
        lab.extend([1, 12, 3]);
        let e = Dataset::from_idx_bytes(p, &header(IMAGES_MAGIC, &[3, 1, 1]), Path::new("l.idx"), &lab);
        let e = e.unwrap_err().to_string();
        assert!(e.contains("the file has 0 bytes"), "{e}");
        let mut three = header(IMAGES_MAGIC, &[3, 1, 1]);
        three.extend([0, 0, 0]);
        let e = Dataset::from_idx_bytes(p, &three, Path::new("l.idx"), &lab).unwrap_err().to_string();
        assert!(e.contains("l.idx") && e.contains("label 12 at index 1"), "{e}");
        let e = read_idx(p, &lab[..10], Idx::Labels).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("3 labels") && e.contains("2 bytes"), "{e}");
    }

    /// A dataset of `n` pictures of `rows`x`cols` with labels 0, 1, 2, … (mod 10), as the
    /// bytes of its two IDX files.
    fn idx_pair(n: u32, rows: u32, cols: u32) -> (Vec<u8>, Vec<u8>) {
        let mut images = header(IMAGES_MAGIC, &[n, rows, cols]);
        images.extend((0..n * rows * cols).map(|i| i as u8));
        let mut labels = header(LABELS_MAGIC, &[n]);
        labels.extend((0..n).map(|i| (i % 10) as u8));
        (images, labels)
    }

    fn gzip(parts: &[&[u8]]) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::new();
        for part in parts {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            out.extend(e.finish().unwrap());
        }
        out
    }

    fn load_pair(images: &[u8], labels: &[u8]) -> Result<Dataset> {
        Dataset::from_idx_bytes(Path::new("img.idx"), images, Path::new("lab.idx"), labels)
    }

    #[test]
    fn an_empty_split_is_an_error_naming_the_file() {
        let (images, labels) = idx_pair(0, 28, 28);
        let e = load_pair(&images, &labels).unwrap_err().to_string();
        assert!(e.contains("img.idx") && e.contains("no images"), "{e}");
    }

    #[test]
    fn a_wrapping_header_product_is_refused() {
        // 2^31 * 2^31 * 4 = 2^64 wraps to 0 in u64, which matched an empty payload.
        let images = header(IMAGES_MAGIC, &[1 << 31, 1 << 31, 4]);
        let e = read_idx(Path::new("img.idx"), &images, Idx::Images).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("img.idx") && e.contains("more than the 4294967296 bytes allowed"), "{e}");
    }

    #[test]
    fn multi_member_gzip_reads_whole() {
        let (images, labels) = idx_pair(5, 4, 3);
        let split = images.len() / 2;
        let d = load_pair(&gzip(&[&images[..split], &images[split..]]), &gzip(&[&labels[..3], &labels[3..]])).unwrap();
        assert_eq!((d.len(), d.rows, d.cols), (5, 4, 3));
        assert_eq!(d.images, images[16..]);
        assert_eq!(d.labels, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn gzip_is_read_no_further_than_the_header_says() {
        let (images, labels) = idx_pair(2, 2, 2);
        let mut longer = images.clone();
        longer.push(7);
        let e = load_pair(&gzip(&[&longer]), &labels).unwrap_err().to_string();
        assert!(e.contains("img.idx") && e.contains("8 bytes of pixels") && e.contains("more than that"), "{e}");
        let e = load_pair(&gzip(&[&images[..images.len() - 3]]), &labels).unwrap_err().to_string();
        assert!(e.contains("img.idx") && e.contains("5 bytes of pixels once decompressed"), "{e}");
        let e = load_pair(&gzip(&[&images[..10]]), &labels).unwrap_err().to_string();
        assert!(e.contains("img.idx") && e.contains("too short"), "{e}");
        let mut cut = gzip(&[&images]);
        cut.truncate(cut.len() - 12);
        let e = format!("{:#}", load_pair(&cut, &labels).unwrap_err());
        assert!(e.contains("img.idx") && e.contains("corrupt or truncated gzip"), "{e}");

        // A gzip bomb: one picture's header, then 4 GiB of zeros in 4 MB. Each repeated
        // block decodes to 1 MiB of zeros after any 32 KiB of zeros.
        use std::io::Write;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&header(IMAGES_MAGIC, &[1, 28, 28])).unwrap();
        enc.write_all(&[0u8; 1 << 16]).unwrap();
        enc.flush().unwrap();
        let start = enc.get_ref().len();
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        enc.flush().unwrap();
        let block = enc.get_ref()[start..].to_vec();
        let mut bomb = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        bomb.extend(&enc.get_ref()[..start]);
        for _ in 0..4096 {
            bomb.extend(&block);
        }
        bomb.extend([3, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // last block, then a (wrong) CRC and size
        assert!(bomb.len() < 8 << 20, "{}", bomb.len());
        let t = std::time::Instant::now();
        let e = read_idx(Path::new("bomb.gz"), &bomb, Idx::Images).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("bomb.gz") && e.contains("784 bytes of pixels") && e.contains("more than that"), "{e}");
        assert!(t.elapsed().as_secs_f64() < 2.0, "took {:?}: decompressed too far", t.elapsed());
    }

    #[test]
    fn check_against_names_the_file_and_the_problem() {
        let (images, labels) = idx_pair(12, 28, 28);
        let d = load_pair(&images, &labels).unwrap();
        d.check_against(&Model::tutorial()).unwrap();
        let five = crate::arch::parse("c2k3 relu pool2 flat fc5", Model::tutorial().input).unwrap();
        let e = d.check_against(&five).unwrap_err().to_string();
        assert!(e.contains("lab.idx") && e.contains("label 5 at index 5") && e.contains("5 outputs"), "{e}");
        for (rows, cols) in [(27, 28), (14, 56), (1, 784)] {
            let (images, labels) = idx_pair(3, rows, cols);
            let e = load_pair(&images, &labels).unwrap().check_against(&Model::tutorial()).unwrap_err().to_string();
            assert!(e.contains("img.idx") && e.contains(&format!("{rows}x{cols}")) && e.contains("28x28"), "{e}");
        }
    }

    #[test]
    fn a_missing_dir_or_file_is_named() {
        let e = Dataset::load(Path::new("/nonexistent"), Split::Train).unwrap_err().to_string();
        assert!(e.contains("/nonexistent") && e.contains("no such directory"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = Dataset::load(empty.path(), Split::Train).unwrap_err().to_string();
        assert!(e.contains(&empty.path().display().to_string()) && e.contains("train-images-idx3-ubyte"), "{e}");
    }
}
