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

/// The output stem of each of `files` (see `Stems`), fixed before any is read, so that
/// where every output goes is known up front.
pub fn stems(files: &[PathBuf]) -> Vec<String> {
    let mut stems = Stems::default();
    files.iter().map(|f| stems.unique(f)).collect()
}

/// Refuse outputs that would replace one of the run's inputs: `infer
/// --save-preprocessed inf inf/a.png inf/a.28x28.png` wrote a.png's preprocessed input
/// over the user's a.28x28.png. Called before any work, so nothing is half done.
/// Paths are compared by the file they name on disk: an output by its directory
/// (canonical) and name, for the directory entry that the atomic write replaces, even
/// a symlink; an input by that entry and by the file it leads to.
pub fn refuse_overwriting_inputs(inputs: &[&Path], outputs: &[PathBuf], flag: &str) -> anyhow::Result<()> {
    let mut taken = std::collections::HashMap::new();
    for &input in inputs {
        for key in [entry(input), input.canonicalize().ok()].into_iter().flatten() {
            taken.entry(key).or_insert(input);
        }
    }
    for output in outputs {
        if let Some(input) = entry(output).and_then(|key| taken.get(&key)) {
            anyhow::bail!(
                "{}: {flag} would write over the input {}; give {flag} another directory",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// The directory entry `path` names, as a canonical directory and a name; None if the
/// directory does not exist (then nothing is there yet).
fn entry(path: &Path) -> Option<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(dir.canonicalize().ok()?.join(path.file_name()?))
}

/// Output stems for one run's pictures: the file's stem, or with "-2", "-3"… when an
/// earlier picture took it (`a/7.png` and `b/7.png`), so no output overwrites another.
#[derive(Default)]
struct Stems(HashSet<String>);

impl Stems {
    fn unique(&mut self, file: &Path) -> String {
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
    fn an_output_over_an_input_is_refused_naming_both() {
        let tmp = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp.path().join(n);
        for f in ["a.png", "a.28x28.png", "elsewhere.png"] {
            std::fs::write(p(f), b"").unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(p("elsewhere.png"), p("link.png")).unwrap();
        let out = |names: &[&str]| names.iter().map(|n| p(n)).collect::<Vec<_>>();
        // The same file however it is spelled: through "..", or as a symlink's target.
        let spelled = tmp.path().join("sub/../a.28x28.png");
        std::fs::create_dir(p("sub")).unwrap();
        let e = refuse_overwriting_inputs(&[&p("a.png"), &spelled], &out(&["a.28x28.png"]), "--flag").unwrap_err();
        let e = e.to_string();
        assert!(e.starts_with(&p("a.28x28.png").display().to_string()), "{e}");
        assert!(e.contains("--flag would write over the input") && e.contains("sub/../a.28x28.png"), "{e}");
        #[cfg(unix)]
        refuse_overwriting_inputs(&[&p("link.png")], &out(&["elsewhere.png"]), "--flag").unwrap_err();
        // Outputs elsewhere, or in a directory not made yet, are fine.
        refuse_overwriting_inputs(&[&p("a.png")], &out(&["a.28x28.png", "new/a.png"]), "--flag").unwrap();
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
