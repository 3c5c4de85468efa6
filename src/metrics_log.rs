//! A run's `metrics.jsonl`: the training log points and the end-of-epoch test points
//! that `gpu-cnn train` appends, one JSON object a line, written by `MetricsWriter`
//! and read back by `MetricsLog` (the field names live in this file alone):
//! - a training point: `step`, `epoch`, `loss`, `accuracy`, `samples_per_s`, `lr`;
//! - a test point: `step`, `epoch`, `test_loss`, `test_accuracy`;
//!
//! and each `run`, the run's identity (`checkpoint::Stamp`): a resumed run keeps the
//! lines of its own run up to its checkpoint's step and no others (`kept_on_resume`).
//!
//! A bad line never stops the reader: a run that is still writing, or was killed,
//! leaves a truncated last line, and one damaged line should not hide the rest of a
//! long run. Each skipped line becomes a warning naming the file and line number.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::arch::shortened;

/// A metrics.jsonl above this is not read (a million log points are about 100 MB).
pub const MAX_BYTES: u64 = 256 << 20;

/// Writes a run's metrics.jsonl as training goes. Nothing reaches the file before the
/// run's first checkpoint (`commit`), so a run killed before it leaves the previous
/// run's metrics as they were, beside that run's checkpoint. The first `commit`
/// replaces the file atomically with the lines a resumed run kept and those since;
/// after it, each line is appended whole as it comes (a `tail -f` sees it).
pub struct MetricsWriter {
    path: PathBuf,
    run: String,
    /// Lines not in the file yet: everything, until the first `commit`.
    pending: Vec<u8>,
    file: Option<std::fs::File>,
}

impl MetricsWriter {
    /// The log of run `run` at `path`, starting with `kept` (from `kept_on_resume`, or "").
    pub fn start(path: &Path, run: &str, kept: String) -> Self {
        MetricsWriter { path: path.to_path_buf(), run: run.to_string(), pending: kept.into_bytes(), file: None }
    }

    /// A training point, with the rate and learning rate it was measured at.
    pub fn train_point(&mut self, record: Record, samples_per_s: f64, lr: f64) -> Result<()> {
        let mut line = record.to_json();
        line["samples_per_s"] = samples_per_s.into();
        line["lr"] = lr.into();
        self.line(line)
    }

    /// A test point.
    pub fn test_point(&mut self, record: Record) -> Result<()> {
        self.line(record.to_json())
    }

    /// Called once a checkpoint is saved: the file then holds every line so far, and
    /// (synced) keeps them through a power cut as the checkpoint does.
    pub fn commit(&mut self) -> Result<()> {
        let p = self.path.display();
        match &mut self.file {
            Some(f) => f.sync_data().with_context(|| format!("{p}: cannot sync")),
            None => {
                crate::files::write_atomic(&self.path, &self.pending)?;
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&self.path)
                    .with_context(|| format!("{p}: cannot open for appending"))?;
                (self.file, self.pending) = (Some(f), Vec::new());
                Ok(())
            }
        }
    }

    fn line(&mut self, mut value: Value) -> Result<()> {
        value["run"] = self.run.clone().into();
        // One write a line: a kill then leaves whole lines, or a cut last one the reader skips.
        let line = format!("{value}\n");
        match &mut self.file {
            Some(f) => f.write_all(line.as_bytes()).with_context(|| format!("{}: cannot write", self.path.display())),
            None => {
                self.pending.extend(line.as_bytes());
                Ok(())
            }
        }
    }
}

/// The lines of a metrics file that a run resuming from a checkpoint of run `run` at
/// `step` keeps, verbatim: its own records up to `step` (with `run` None, a checkpoint
/// from before runs were recorded, or a line without one: by step alone). Lines after
/// the step were logged past the checkpoint and will be logged again; lines of another
/// run, or not records at all, do not belong. Returns the kept text and how many
/// non-blank lines were dropped.
pub fn kept_on_resume(text: &str, run: Option<&str>, step: u64) -> (String, usize) {
    let (mut kept, mut dropped) = (String::new(), 0);
    for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
        let keep = match parse_line(line) {
            Ok((record, line_run)) => {
                let ours = match (run, line_run.as_deref()) {
                    (Some(run), Some(line_run)) => run == line_run,
                    _ => true,
                };
                ours && record.step() <= step
            }
            Err(_) => false,
        };
        if keep {
            kept.push_str(line);
            kept.push('\n');
        } else {
            dropped += 1;
        }
    }
    (kept, dropped)
}

/// One line of metrics.jsonl.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Record {
    /// Mean loss and accuracy of the training batches since the previous log point.
    Train { step: u64, epoch: u64, loss: f64, accuracy: f64 },
    /// Loss and accuracy on the test set at the end of an epoch.
    Test { step: u64, epoch: u64, loss: f64, accuracy: f64 },
}

impl Record {
    pub fn step(&self) -> u64 {
        match *self {
            Record::Train { step, .. } | Record::Test { step, .. } => step,
        }
    }

    fn to_json(self) -> Value {
        match self {
            Record::Train { step, epoch, loss, accuracy } => {
                json!({"step": step, "epoch": epoch, "loss": loss, "accuracy": accuracy})
            }
            Record::Test { step, epoch, loss, accuracy } => {
                json!({"step": step, "epoch": epoch, "test_loss": loss, "test_accuracy": accuracy})
            }
        }
    }
}

/// A (step, loss, accuracy) point, as `plot::training_curves` takes them.
pub type Point = (u64, f64, f64);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsLog {
    pub records: Vec<Record>,
    /// "FILE:LINE: problem; skipped", one for each line that was not a record.
    pub warnings: Vec<String>,
}

impl MetricsLog {
    /// Read `path`; only a file that cannot be read at all (missing, not a regular
    /// file, over `MAX_BYTES`) is an error.
    pub fn read(path: &Path) -> Result<MetricsLog> {
        let bytes = crate::files::read_file(path, MAX_BYTES)?;
        Ok(MetricsLog::parse(&String::from_utf8_lossy(&bytes), &path.display().to_string()))
    }

    /// Parse the text of a metrics file; `name` is how warnings refer to it.
    pub fn parse(text: &str, name: &str) -> MetricsLog {
        let mut log = MetricsLog::default();
        let lines: Vec<&str> = text.split('\n').collect();
        // The writer ends every record with a newline: a last line without one was cut short.
        let unfinished = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(line) {
                Ok((r, _)) => log.records.push(r),
                Err(e) if i == unfinished => {
                    log.warnings.push(format!("{name}:{}: truncated last line ({e}); skipped", i + 1))
                }
                Err(e) => log.warnings.push(format!("{name}:{}: {e}; skipped", i + 1)),
            }
        }
        log
    }

    /// Training and test points in step order, as `plot::training_curves` takes them.
    /// A resumed run appends to the file and logs the steps after its checkpoint again:
    /// for a step logged twice the later line wins, as it belongs to the run that went on.
    pub fn curves(&self) -> (Vec<Point>, Vec<Point>) {
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for r in &self.records {
            match *r {
                Record::Train { step, loss, accuracy, .. } => train.push((step, loss, accuracy)),
                Record::Test { step, loss, accuracy, .. } => test.push((step, loss, accuracy)),
            }
        }
        (latest_per_step(train), latest_per_step(test))
    }
}

fn latest_per_step(mut points: Vec<Point>) -> Vec<Point> {
    // A stable sort keeps equal steps in file order, so the last of each run is the latest.
    points.sort_by_key(|p| p.0);
    let mut out: Vec<Point> = Vec::with_capacity(points.len());
    for p in points {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// A record and the run that wrote it, if the line says.
fn parse_line(line: &str) -> std::result::Result<(Record, Option<String>), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let uint = |k: &str| obj.get(k).and_then(Value::as_u64).ok_or_else(|| format!("no whole number '{k}'"));
    let num = |k: &str| match obj.get(k) {
        // A damaged file can hold a megabyte where a number goes: quoted short, as elsewhere.
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("'{k}' is {}, not a finite number", shortened(&v.to_string(), 80))),
        None => Err(format!("no '{k}'")),
    };
    let (step, epoch) = (uint("step")?, uint("epoch")?);
    let record = if obj.contains_key("test_loss") {
        Record::Test { step, epoch, loss: num("test_loss")?, accuracy: num("test_accuracy")? }
    } else if obj.contains_key("loss") {
        Record::Train { step, epoch, loss: num("loss")?, accuracy: num("accuracy")? }
    } else {
        return Err("neither a training point ('loss') nor a test point ('test_loss')".into());
    };
    Ok((record, obj.get("run").and_then(Value::as_str).map(String::from)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAIN2: &str = r#"{"step":2,"epoch":1,"loss":2.25,"accuracy":0.125,"samples_per_s":900.0,"lr":0.001}"#;
    const TRAIN4: &str = r#"{"step":4,"epoch":1,"loss":2.0,"accuracy":0.25,"samples_per_s":950.0,"lr":0.001}"#;
    const TEST4: &str = r#"{"step":4,"epoch":1,"test_loss":1.5,"test_accuracy":0.5}"#;

    #[test]
    fn what_the_writer_writes_the_reader_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let (train, test) = (
            Record::Train { step: 50, epoch: 1, loss: 0.25, accuracy: 0.875 },
            Record::Test { step: 938, epoch: 1, loss: 0.0625, accuracy: 0.98 },
        );
        std::fs::write(&path, "the previous run's lines\n").unwrap();
        let mut w = MetricsWriter::start(&path, "r1", String::new());
        w.train_point(train, 390.5, 1e-3).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "the previous run's lines\n",
            "written before a checkpoint"
        );
        w.commit().unwrap();
        w.test_point(test).unwrap();
        let log = MetricsLog::read(&path).unwrap();
        assert!(log.warnings.is_empty(), "{:?}", log.warnings);
        assert_eq!(log.records, [train, test]);
        let first: Value =
            serde_json::from_str(std::fs::read_to_string(&path).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!((first["samples_per_s"].as_f64(), first["lr"].as_f64()), (Some(390.5), Some(1e-3)));
        assert_eq!(first["run"], "r1");
    }

    /// A full disk (Linux's /dev/full answers every write with ENOSPC) after the first
    /// commit, when lines are appended as they come: the error names metrics.jsonl.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_names_the_metrics_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = MetricsWriter::start(&path, "r1", String::new());
        w.commit().unwrap();
        w.file = Some(std::fs::OpenOptions::new().append(true).open("/dev/full").unwrap());
        let e = w.train_point(Record::Train { step: 1, epoch: 1, loss: 1.0, accuracy: 0.5 }, 1.0, 1e-3).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains(&format!("{}: cannot write", path.display())) && e.contains("No space left"), "{e}");
    }

    #[test]
    fn a_resumed_run_keeps_its_own_lines_up_to_its_checkpoint() {
        let line =
            |run: &str, step: u64| format!(r#"{{"step":{step},"epoch":1,"loss":2.0,"accuracy":0.5,"run":"{run}"}}"#);
        let text =
            [line("a", 2), line("a", 4), line("b", 3), TEST4.to_string(), line("a", 6), "{\"step\": 8, \"ep".into()]
                .join("\n");
        let (kept, dropped) = kept_on_resume(&text, Some("a"), 4);
        // Run a's lines to step 4, and the one without a run (written before runs were recorded).
        assert_eq!(kept, format!("{}\n{}\n{TEST4}\n", line("a", 2), line("a", 4)));
        assert_eq!(dropped, 3, "b's line, a's step 6 and the cut last line");
        let (kept, _) = kept_on_resume(&text, None, 3);
        assert_eq!(kept, format!("{}\n{}\n", line("a", 2), line("b", 3)), "by step alone");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = MetricsWriter::start(&path, "a", kept_on_resume(&text, Some("a"), 4).0);
        w.train_point(Record::Train { step: 6, epoch: 1, loss: 1.0, accuracy: 0.75 }, 1.0, 1e-3).unwrap();
        w.commit().unwrap();
        let steps: Vec<u64> = MetricsLog::read(&path).unwrap().records.iter().map(Record::step).collect();
        assert_eq!(steps, [2, 4, 4, 6]);
    }

    #[test]
    fn reads_training_and_test_points() {
        let log = MetricsLog::parse(&format!("{TRAIN2}\n{TRAIN4}\n{TEST4}\n"), "m.jsonl");
        assert!(log.warnings.is_empty(), "{:?}", log.warnings);
        assert_eq!(log.records[2], Record::Test { step: 4, epoch: 1, loss: 1.5, accuracy: 0.5 });
        let (train, test) = log.curves();
        assert_eq!(train, vec![(2, 2.25, 0.125), (4, 2.0, 0.25)]);
        assert_eq!(test, vec![(4, 1.5, 0.5)]);
    }

    #[test]
    fn a_malformed_line_is_skipped_with_its_line_number() {
        let text = format!("{TRAIN2}\n{{\"step\": oops}}\n[1, 2]\n{{\"step\":3,\"epoch\":1}}\n{TRAIN4}\n");
        let log = MetricsLog::parse(&text, "runs/a/metrics.jsonl");
        assert_eq!(log.records.len(), 2);
        assert_eq!(log.warnings.len(), 3, "{:?}", log.warnings);
        assert!(log.warnings[0].starts_with("runs/a/metrics.jsonl:2: not JSON"), "{}", log.warnings[0]);
        assert!(log.warnings[1].starts_with("runs/a/metrics.jsonl:3: not a JSON object"), "{}", log.warnings[1]);
        assert!(log.warnings[2].starts_with("runs/a/metrics.jsonl:4: neither"), "{}", log.warnings[2]);
    }

    #[test]
    fn a_missing_or_null_value_is_named() {
        let log = MetricsLog::parse("{\"step\":1,\"epoch\":1,\"loss\":null,\"accuracy\":0.5}\n", "m");
        assert_eq!(log.warnings, ["m:1: 'loss' is null, not a finite number; skipped"]);
        let log = MetricsLog::parse("{\"step\":1,\"epoch\":1,\"test_loss\":1.0}\n", "m");
        assert_eq!(log.warnings, ["m:1: no 'test_accuracy'; skipped"]);
        let huge = format!("{{\"step\":1,\"epoch\":1,\"loss\":\"{}\",\"accuracy\":0.5}}\n", "A".repeat(1 << 20));
        let log = MetricsLog::parse(&huge, "m");
        assert!(
            log.warnings[0].len() < 200 && log.warnings[0].contains("(1048578 bytes)"),
            "{}",
            shortened(&log.warnings[0], 300)
        );
    }

    #[test]
    fn a_truncated_last_line_is_skipped_and_called_truncated() {
        let text = format!("{TRAIN2}\n{}", &TRAIN4[..30]);
        let log = MetricsLog::parse(&text, "m.jsonl");
        assert_eq!(log.records.len(), 1);
        assert_eq!(log.warnings.len(), 1);
        assert!(log.warnings[0].starts_with("m.jsonl:2: truncated last line"), "{}", log.warnings[0]);
        // A complete last line without its newline is still a record.
        let log = MetricsLog::parse(&format!("{TRAIN2}\n{TRAIN4}"), "m.jsonl");
        assert_eq!((log.records.len(), log.warnings.len()), (2, 0));
    }

    #[test]
    fn an_empty_file_has_no_records_and_no_warnings() {
        for text in ["", "\n", "  \n\n"] {
            assert_eq!(MetricsLog::parse(text, "m"), MetricsLog::default());
        }
    }

    #[test]
    fn a_resumed_run_keeps_the_later_line_of_a_repeated_step() {
        let again = TRAIN4.replace("2.0", "1.75");
        let log = MetricsLog::parse(&format!("{TRAIN2}\n{TRAIN4}\n{TRAIN2}\n{again}\n"), "m");
        assert_eq!(log.curves().0, vec![(2, 2.25, 0.125), (4, 1.75, 0.25)]);
    }

    #[test]
    fn read_names_a_missing_file_and_refuses_what_is_not_a_file() {
        let e = MetricsLog::read(Path::new("/nonexistent/metrics.jsonl")).unwrap_err();
        assert!(format!("{e:#}").contains("cannot read /nonexistent/metrics.jsonl"), "{e:#}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::create_dir(&path).unwrap();
        let e = format!("{:#}", MetricsLog::read(&path).unwrap_err());
        assert!(e.contains("metrics.jsonl: is a directory, not a regular file"), "{e}");
    }
}
