//! `gpu-cnn train`'s progress display: a bar with loss, running accuracy,
//! samples/s and ETA on a terminal, plain lines when stdout is not one. After a line
//! fails to print (a closed pipe), it prints nothing more: `train` is stopping.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use gpu_cnn::executor::Stats;

use super::output::StdoutError;

pub struct Progress {
    fancy: bool,
    quiet: bool,
    epochs: usize,
    bar: ProgressBar,
    /// The bar on screen, for `Notices` from other threads.
    shown: Arc<Mutex<ProgressBar>>,
}

/// Prints a line to stderr from any thread without tearing the bar: the bar is
/// hidden while the line is written, then drawn again below it.
#[derive(Clone)]
pub struct Notices(Arc<Mutex<ProgressBar>>);

impl Notices {
    pub fn say(&self, line: &str) {
        let bar = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        bar.suspend(|| errln!("{line}"));
    }
}

impl Progress {
    pub fn new(epochs: usize) -> Self {
        let bar = ProgressBar::hidden();
        let shown = Arc::new(Mutex::new(bar.clone()));
        Progress { fancy: std::io::stdout().is_terminal(), quiet: false, epochs, bar, shown }
    }

    pub fn notices(&self) -> Notices {
        Notices(self.shown.clone())
    }

    pub fn epoch_start(&mut self, epoch: usize, batches: usize, first: usize) {
        if self.fancy {
            self.bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stdout());
            let style = ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("a valid progress template")
                .progress_chars("=> ");
            self.bar.set_style(style);
            self.bar.set_prefix(format!("{}/{}", epoch + 1, self.epochs));
            self.bar.set_position(first as u64);
            *self.shown.lock().unwrap_or_else(|e| e.into_inner()) = self.bar.clone();
        }
    }

    pub fn step(&mut self) {
        self.bar.inc(1);
    }

    /// A log point: on the bar, or as a line `epoch E step S (B/N) loss … acc …% … samples/s`.
    pub fn logged(
        &mut self,
        epoch: usize,
        batch_in_epoch: usize,
        batches: usize,
        global: u64,
        s: &Stats,
        rate: f64,
    ) -> Result<(), StdoutError> {
        let msg = format!("loss {:.4} acc {:.2}% {:.0} samples/s", s.mean_loss(), 100.0 * s.accuracy(), rate);
        if self.fancy {
            self.bar.set_message(msg);
        } else if !self.quiet {
            let line = outln!("epoch {} step {global} ({}/{batches}) {msg}", epoch + 1, batch_in_epoch + 1);
            self.quiet = line.is_err();
            line?;
        }
        Ok(())
    }

    /// Clear the bar (an epoch ended or the run stopped).
    pub fn finish(&mut self) {
        self.bar.finish_and_clear();
    }

    /// Leave the bar as it is (the run failed).
    pub fn abandon(&mut self) {
        self.bar.abandon();
    }
}
