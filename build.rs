//! Embeds every WGSL file under `shaders/` into the library as a table of
//! (file name, source), so `src/gpu/shader.rs` can resolve `#include` lines at
//! load time and no list of shader files is kept by hand.

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("shaders");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the shaders/ directory")
        .map(|e| e.expect("a readable shaders/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    let mut out =
        String::from("/// Every file of `shaders/`: (file name, source).\npub const FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        let name = f.file_name().unwrap().to_str().expect("a UTF-8 shader file name");
        writeln!(out, "    ({name:?}, include_str!({:?})),", f.display().to_string()).unwrap();
    }
    out += "];\n";
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("shader_files.rs");
    std::fs::write(dest, out).expect("writing shader_files.rs");
}
