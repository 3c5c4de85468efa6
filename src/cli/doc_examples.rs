//! The `gpu-cnn` commands that README.md and docs/ show must parse: an option renamed,
//! removed or moved (`gpu-cnn --gemm X bench` stopped parsing when `--gemm` stopped
//! being global) fails this test instead of a reader.

use clap::CommandFactory;

use super::shell::split as shell_words;
use super::Cli;

/// Every Markdown page a user reads commands from.
const PAGES: &[(&str, &str)] = &[
    ("README.md", include_str!("../../README.md")),
    ("docs/commands.md", include_str!("../../docs/commands.md")),
    ("docs/walkthrough.md", include_str!("../../docs/walkthrough.md")),
    ("docs/explain.md", include_str!("../../docs/explain.md")),
    ("docs/plots.md", include_str!("../../docs/plots.md")),
    ("docs/serve.md", include_str!("../../docs/serve.md")),
    ("docs/robustness.md", include_str!("../../docs/robustness.md")),
    ("docs/performance.md", include_str!("../../docs/performance.md")),
    ("docs/testing.md", include_str!("../../docs/testing.md")),
    ("docs/architecture.md", include_str!("../../docs/architecture.md")),
];

/// A command as a page shows it, and the line it starts on.
struct Example {
    line: usize,
    text: String,
}

/// The commands of a Markdown page: each line of a fenced block that runs `gpu-cnn` or
/// `cargo run --release --` (a trailing backslash joins the next line), and each inline
/// code span that runs `gpu-cnn`, unless it is a synopsis (see `is_synopsis`). What a
/// pipe feeds is cut off.
fn examples(page: &str) -> Vec<Example> {
    let mut found = Vec::new();
    let mut fenced = false;
    let mut pending: Option<Example> = None;
    let mut prose = String::new();
    let mut prose_lines = Vec::new();
    for (i, line) in page.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            prose.push_str(line);
            prose.push(' ');
            prose_lines.push((prose.len(), i + 1));
            continue;
        }
        let (text, more) = match line.trim_end().strip_suffix('\\') {
            Some(t) => (t, true),
            None => (line, false),
        };
        let example = match pending.take() {
            Some(mut e) => {
                e.text.push(' ');
                e.text.push_str(text);
                e
            }
            None => {
                let text = text.trim_start();
                let text = match text.strip_prefix("cargo run --release --") {
                    Some(rest) => format!("gpu-cnn{rest}"),
                    None => text.to_string(),
                };
                if !text.starts_with("gpu-cnn") {
                    continue;
                }
                Example { line: i + 1, text }
            }
        };
        if more {
            pending = Some(example);
        } else if !is_synopsis(&example.text) {
            found.push(example);
        }
    }
    // Odd pieces between backticks are code spans (a span may wrap a line).
    let mut offset = 0;
    for (k, piece) in prose.split('`').enumerate() {
        let line = prose_lines.iter().find(|(end, _)| *end > offset).map_or(0, |(_, l)| *l);
        offset += piece.len() + 1;
        let text = piece.split('|').next().unwrap_or("").trim();
        if k % 2 == 1 && text.starts_with("gpu-cnn ") && !is_synopsis(text) {
            found.push(Example { line, text: text.to_string() });
        }
    }
    found
}

/// A command's form rather than a command: a word with `<…>`, `[…]` or an ellipsis, or
/// a placeholder in capitals (`B`, `RUN_DIR`).
fn is_synopsis(command: &str) -> bool {
    shell_words(command).iter().any(|w| {
        let placeholder =
            w.chars().any(|c| c.is_ascii_uppercase()) && w.chars().all(|c| c.is_ascii_uppercase() || c == '_');
        placeholder || w.contains(['<', '[', '…']) || w.contains("...")
    })
}

#[test]
fn the_examples_of_a_page_are_found() {
    let page = "Run `gpu-cnn eval --json` or `gpu-cnn infer IMAGE...`, then\n`gpu-cnn train\n--steps 5 | head`.\n\n```sh\ncargo run --release -- bench   # note\ngpu-cnn plot a \\\n  b -o c.png\ngpu-cnn serve [--addr A]\nls\n```\n";
    let found: Vec<(usize, String)> = examples(page).into_iter().map(|e| (e.line, e.text)).collect();
    let want = [
        (6, "gpu-cnn bench   # note"),
        (7, "gpu-cnn plot a    b -o c.png"),
        (1, "gpu-cnn eval --json"),
        (2, "gpu-cnn train --steps 5"),
    ];
    assert_eq!(found, want.map(|(l, t)| (l, t.to_string())));
}

#[test]
fn every_command_the_docs_show_parses() {
    let (mut bad, mut count) = (Vec::new(), 0);
    for (page, text) in PAGES {
        for e in examples(text) {
            count += 1;
            let words = shell_words(&e.text);
            // `gpu-cnn explain` in prose names the command: it need only exist.
            if let [_, name] = &words[..] {
                if Cli::command().find_subcommand(name).is_none() {
                    bad.push(format!("{page}:{}: {}: no such command", e.line, e.text));
                }
                continue;
            }
            if let Err(err) = Cli::command_line().try_get_matches_from(&words) {
                if err.kind() != clap::error::ErrorKind::DisplayHelp {
                    bad.push(format!("{page}:{}: {}\n{}", e.line, e.text, err.render()));
                }
            }
        }
    }
    // 106 when this was written: far fewer means the scan broke.
    assert!(count >= 90, "only {count} commands found in the docs: is the scan broken?");
    assert!(bad.is_empty(), "{} documented commands do not parse:\n\n{}", bad.len(), bad.join("\n"));
}
