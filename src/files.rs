//! Reading and writing the user's files safely, for every command: a whole regular
//! file of bounded size (never a FIFO or a device that would block or never end), and
//! atomic writes through a temporary beside the target, so that a crash at any moment
//! leaves the old file or the new one, never half of one. Used for checkpoints,
//! metrics, pictures, datasets and plots.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::path::Path;

/// Write `bytes` to `path` so that a crash at any moment leaves either the old file or
/// the new one: a temporary file in the same directory, fsync, rename, fsync the directory.
/// A kill can leave the temporary behind; `remove_stale_temporaries` clears those.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = temporary_of(path)?;
    // Errors name the file the caller asked for; the temporary is a detail of how.
    let (p, t) = (path.display(), tmp.display());
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("{p}: cannot create temporary file {t}"))?;
        let (first, second) = bytes.split_at(bytes.len() / 2);
        f.write_all(first).with_context(|| format!("{p}: cannot write {t}"))?;
        if let Some(midway) = MIDWAY.get() {
            midway(&tmp);
        }
        f.write_all(second).with_context(|| format!("{p}: cannot write {t}"))?;
        f.sync_all().with_context(|| format!("{p}: cannot sync {t}"))?;
        std::fs::rename(&tmp, path).with_context(|| format!("{p}: cannot replace it with {t}"))?;
        // Make the rename itself durable (not possible on every platform; best effort).
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().ok();
        }
        Ok(())
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// What `write_atomic` calls halfway through each write, with the temporary's path.
pub type MidwayHook = Box<dyn Fn(&Path) + Send + Sync>;

static MIDWAY: std::sync::OnceLock<MidwayHook> = std::sync::OnceLock::new();

/// Test-only: have every later `write_atomic` of this process call `hook` once half of
/// its bytes are written, so that a test can kill the process inside a write (`gpu-cnn
/// train` sets one from `GPU_CNN_TEST_PAUSE_WRITE`; see `tests/crash.rs`). Once per
/// process; false if a hook was already set.
pub fn set_midway_hook(hook: MidwayHook) -> bool {
    MIDWAY.set(hook).is_ok()
}

/// The temporary `write_atomic` writes `path` through: `.<name>.tmp-<pid>` beside it.
fn temporary_of(path: &Path) -> Result<std::path::PathBuf> {
    let name = path.file_name().ok_or_else(|| anyhow!("{}: not a file path", path.display()))?;
    Ok(path.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id())))
}

/// Whether `entry` is a temporary `write_atomic` made for a file named one of `names`
/// (`.<name>.tmp-<pid>`), and not one of this process's.
fn is_stale_temporary(entry: &str, names: &[&str]) -> bool {
    let Some(rest) = entry.strip_prefix('.') else { return false };
    names.iter().any(|name| {
        let pid = rest.strip_prefix(name).and_then(|r| r.strip_prefix(".tmp-")).unwrap_or("");
        !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && pid != std::process::id().to_string()
    })
}

/// Remove the temporaries a killed writer left in `dir` for the files `names`; returns
/// what was removed. Only for a caller that owns those files in `dir` (holds its lock):
/// another live writer's temporary would otherwise vanish under it.
pub fn remove_stale_temporaries(dir: &Path, names: &[&str]) -> Result<Vec<std::path::PathBuf>> {
    let d = dir.display();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{d}: cannot list the directory"))? {
        let entry = entry.with_context(|| format!("{d}: cannot list the directory"))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && entry.file_name().to_str().is_some_and(|n| is_stale_temporary(n, names)) {
            let path = entry.path();
            std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove it", path.display()))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Read a whole regular file of at most `max` bytes. Anything else (a FIFO, a socket, a
/// device, a directory) is refused by name before it is opened: opening a FIFO blocks
/// until someone writes to it, and a device may never end.
pub fn read_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    let p = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {p}"))?;
    if !meta.is_file() {
        bail!("{p}: is {}, not a regular file", file_kind(&meta.file_type()));
    }
    if meta.len() > max {
        bail!("{p}: {} bytes is more than the {max} bytes such a file may have", meta.len());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {p}"))?;
    if bytes.len() as u64 > max {
        bail!("{p}: grew past {max} bytes while being read");
    }
    Ok(bytes)
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        } else if t.is_socket() {
            return "a socket";
        } else if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_name_the_file_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file goes: the rename fails.
        let target = dir.path().join("model.safetensors");
        std::fs::create_dir_all(target.join("inside")).unwrap();
        let e = format!("{:#}", write_atomic(&target, b"bytes").unwrap_err());
        assert!(e.starts_with(&format!("{}: cannot replace it with", target.display())), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary was left");
        let missing = dir.path().join("no/such/dir/metrics.jsonl");
        let e = format!("{:#}", write_atomic(&missing, b"x").unwrap_err());
        assert!(e.starts_with(&format!("{}: cannot create temporary file", missing.display())), "{e}");
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = std::env::temp_dir();
        let e = format!("{:#}", read_file(&dir, 1 << 20).unwrap_err());
        assert!(e.contains(&dir.display().to_string()) && e.contains("a directory, not a regular file"), "{e}");
        #[cfg(unix)]
        {
            let e = format!("{:#}", read_file(Path::new("/dev/zero"), 1 << 20).unwrap_err());
            assert!(e.contains("/dev/zero: is a device"), "{e}");
        }
        let f = dir.join(format!("gpu-cnn-read-{}", std::process::id()));
        std::fs::write(&f, [1, 2, 3]).unwrap();
        assert_eq!(read_file(&f, 3).unwrap(), [1, 2, 3]);
        let e = format!("{:#}", read_file(&f, 2).unwrap_err());
        assert!(e.contains("3 bytes is more than the 2 bytes"), "{e}");
        std::fs::remove_file(&f).ok();
    }
}
