//! The pictures named on a command line, shared by `infer` and `explain`: directories
//! expanded to the picture files in them, and output names that never collide.

use anyhow::anyhow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"];

/// The pictures named on the command line, directories expanded to the image files in
/// them (sorted), and an error for each argument that yields none (reported, not fatal).
pub fn expand(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<anyhow::Error>) {
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    for p in paths {
        if p.is_dir() {
            let listed = match std::fs::read_dir(p) {
                Ok(entries) => entries.map(|e| e.map(|e| e.path())).collect::<std::io::Result<Vec<PathBuf>>>(),
                Err(e) => Err(e),
            };
            let mut files: Vec<PathBuf> = match listed {
                Ok(files) => files,
                Err(e) => {
                    errors.push(anyhow!("cannot list {}: {e}", p.display()));
                    continue;
                }
            };
            // Not only regular files: a FIFO or device named like a picture is then
            // reported by name instead of silently skipped.
            files.retain(|f| {
                !f.is_dir()
                    && f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            });
            files.sort();
            if files.is_empty() {
                errors.push(anyhow!("{}: no image files in this directory", p.display()));
            }
            out.extend(files);
        } else if p.symlink_metadata().is_ok() {
            out.push(p.clone());
        } else {
            errors.push(anyhow!("{}: no such file or directory", p.display()));
        }
    }
    (out, errors)
}

/// Output stems for one run's pictures: the file's stem, or with "-2", "-3"… when an
/// earlier picture took it (`a/7.png` and `b/7.png`), so no output overwrites another.
#[derive(Default)]
pub struct Stems(HashSet<String>);

impl Stems {
    pub fn unique(&mut self, file: &Path) -> String {
        let stem = file.file_stem().map_or_else(|| "picture".into(), |s| s.to_string_lossy().into_owned());
        let mut name = stem.clone();
        let mut n = 1;
        while !self.0.insert(name.clone()) {
            n += 1;
            name = format!("{stem}-{n}");
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_with_the_same_stem_get_their_own_names() {
        let mut stems = Stems::default();
        let names: Vec<String> =
            ["a/7.png", "b/7.png", "7.jpg", "3.png"].iter().map(|f| stems.unique(Path::new(f))).collect();
        assert_eq!(names, ["7", "7-2", "7-3", "3"]);
    }

    #[test]
    fn a_directory_expands_to_its_pictures_and_an_empty_one_is_reported() {
        let dir = std::env::temp_dir().join(format!("gpu-cnn-pictures-{}", std::process::id()));
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        for f in ["b.PNG", "a.jpg", "notes.txt"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let (files, errors) = expand(&[dir.clone(), empty.clone(), dir.join("missing.png")]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(files, [dir.join("a.jpg"), dir.join("b.PNG")]);
        let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("no image files"), "{errors:?}");
        assert!(errors[1].contains("missing.png: no such file"), "{errors:?}");
    }
}
