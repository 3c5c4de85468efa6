//! Why a run stops before its end, and the answer to the signal that asks it to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cli::output::{StdoutError, CLOSED_STDOUT_EXIT};
use crate::cli::progress::Notices;
use crate::cli::signals;

/// Why a run stopped before its end.
pub enum Stop {
    Signal(i32),
    StdoutClosed,
    Failed(anyhow::Error),
}

impl Stop {
    pub fn from_error(e: anyhow::Error) -> Stop {
        match e.downcast_ref::<StdoutError>() {
            Some(s) if s.closed() => Stop::StdoutClosed,
            _ => Stop::Failed(e),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Stop::Signal(s) => 128 + *s as u8,
            Stop::StdoutClosed => CLOSED_STDOUT_EXIT,
            Stop::Failed(_) => 1,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Stop::Signal(s) => format!("interrupted by {}", signals::name(*s)),
            Stop::StdoutClosed => "standard output was closed".into(),
            Stop::Failed(e) => format!("error: {e:#}"),
        }
    }
}

/// Answers the first caught signal once, from whichever thread sees it first: a
/// watcher, so that the answer comes when the signal does rather than when the steps
/// in flight end (the host queues one ahead of the GPU, and at a large batch on a CPU
/// driver a step takes minutes), or the training loop, so that it always comes before
/// the stop is reported.
#[derive(Clone)]
pub struct SignalNotice {
    said: Arc<AtomicBool>,
    notices: Notices,
}

impl SignalNotice {
    pub fn new(notices: Notices) -> Self {
        SignalNotice { said: Arc::new(AtomicBool::new(false)), notices }
    }

    pub fn caught(&self) -> Option<i32> {
        let s = signals::caught()?;
        if !self.said.swap(true, Ordering::SeqCst) {
            let name = signals::name(s);
            self.notices.say(&format!(
                "{name}: stopping after the steps already sent to the GPU, to save them; another signal ends the process at once, losing them"
            ));
        }
        Some(s)
    }
}
