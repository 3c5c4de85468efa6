//! The WGSL sources and how they compose. WGSL has no includes, so a file names
//! what it needs with a comment line `// #include "grid.wgsl"`, which
//! [`compose`] replaces by that file's own composed text. Each file is taken
//! once however often it is named, so a shared piece (the grid prelude, integer
//! division) can be named by every file that uses it. A *module* is a file that
//! no other file includes and whose composition has entry points; the rest are
//! pieces, composed only into modules.

use anyhow::{anyhow, bail, Result};

mod files {
    include!(concat!(env!("OUT_DIR"), "/shader_files.rs"));
}

const INCLUDE: &str = "// #include \"";

/// Every WGSL file under `shaders/`, as (file name, source).
pub fn files() -> &'static [(&'static str, &'static str)] {
    files::FILES
}

/// The source of one file, as written.
pub fn source(file: &str) -> Result<&'static str> {
    files::FILES
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, src)| *src)
        .ok_or_else(|| anyhow!("no shader file '{file}' in shaders/"))
}

/// The modules: files that no file includes and that have entry points, their own
/// or their includes' (conv2d_coop.wgsl supplies functions to the entry points of
/// conv2d_mixed.wgsl); each compiles alone.
pub fn modules() -> impl Iterator<Item = &'static str> {
    let included: Vec<&str> = files::FILES.iter().flat_map(|(name, _)| includes(name).unwrap_or_default()).collect();
    files::FILES
        .iter()
        .filter(move |(name, _)| !included.contains(name) && compose(name).is_ok_and(|src| src.contains("@compute")))
        .map(|(name, _)| *name)
}

/// The files `file` names on its include lines, in order.
pub fn includes(file: &str) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for line in source(file)?.lines() {
        if let Some(rest) = line.strip_prefix(INCLUDE) {
            let name = rest.strip_suffix('"').ok_or_else(|| anyhow!("{file}: malformed include line '{line}'"))?;
            out.push(
                files::FILES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(n, _)| *n)
                    .ok_or_else(|| anyhow!("{file}: includes '{name}', which is not in shaders/"))?,
            );
        }
    }
    Ok(out)
}

/// `file` with every include resolved: the included files' text first (each
/// once, depth first, in the order named), then the file's own. WGSL wants its
/// `enable` directives before any declaration, so they move to the top.
pub fn compose(file: &str) -> Result<String> {
    let file = files::FILES.iter().find(|(n, _)| *n == file).map(|(n, _)| *n);
    let file = file.ok_or_else(|| anyhow!("no shader file '{file:?}' in shaders/"))?;
    let mut body = String::new();
    append(file, &mut body, &mut Vec::new(), &mut Vec::new())?;
    let (directives, rest): (Vec<&str>, Vec<&str>) = body.lines().partition(|l| l.starts_with("enable "));
    let mut out = String::new();
    for (i, d) in directives.iter().enumerate() {
        if !directives[..i].contains(d) {
            out.push_str(d);
            out.push('\n');
        }
    }
    for l in rest {
        out.push_str(l);
        out.push('\n');
    }
    Ok(out)
}

fn append(
    file: &'static str,
    out: &mut String,
    done: &mut Vec<&'static str>,
    stack: &mut Vec<&'static str>,
) -> Result<()> {
    if done.contains(&file) {
        return Ok(());
    }
    if stack.contains(&file) {
        bail!("shader include cycle: {} -> {file}", stack.join(" -> "));
    }
    stack.push(file);
    for dep in includes(file)? {
        append(dep, out, done, stack)?;
    }
    stack.pop();
    out.push_str(&format!("// ---- {file} ----\n"));
    out.push_str(source(file)?);
    out.push('\n');
    done.push(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composition_takes_each_file_once_and_dependencies_first() {
        let src = compose("conv2d_subgroup.wgsl").unwrap();
        let at = |f: &str| {
            let marker = format!("// ---- {f} ----");
            assert_eq!(src.matches(&marker).count(), 1, "{f} composed {} times", src.matches(&marker).count());
            src.find(&marker).unwrap()
        };
        assert!(at("grid.wgsl") < at("conv2d_common.wgsl"));
        assert!(at("udiv.wgsl") < at("conv2d_common.wgsl"));
        assert!(at("conv2d_common.wgsl") < at("conv2d_subgroup.wgsl"));
        assert!(at("subgroup_tile.wgsl") < at("conv2d_subgroup.wgsl"));
    }

    #[test]
    fn enable_directives_come_first() {
        let src = compose("conv2d_coop.wgsl").unwrap();
        let lines: Vec<&str> = src.lines().collect();
        assert_eq!(lines[..2], ["enable f16;", "enable wgpu_cooperative_matrix;"]);
        assert_eq!(lines.iter().filter(|l| l.starts_with("enable ")).count(), 2);
        assert!(compose("conv2d_tiled.wgsl").unwrap().starts_with("// ---- grid.wgsl ----"));
    }

    #[test]
    fn every_include_names_a_file_and_every_piece_is_used() {
        let mut used = Vec::new();
        for (name, _) in files() {
            used.extend(includes(name).unwrap());
        }
        let modules: Vec<&str> = modules().collect();
        for (name, _) in files() {
            assert!(
                modules.contains(name) || used.contains(name),
                "{name} has no entry point, its own or its includes', and no file includes it"
            );
        }
        assert!(source("nope.wgsl").is_err());
    }
}
