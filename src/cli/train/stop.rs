//! Why a run stops before its end, and the answer to the signal that asks it to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gpu_cnn::executor::Optimizer;
use gpu_cnn::schedule::Schedule;

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

/// What to lower after the loss diverged at `step`: the learning rate, whose
/// schedule may have raised it well above `--lr` by then (warmup, onecycle), and the
/// weight decay when there is one (lr × decay past 1 flips the weights' signs under AdamW).
pub fn divergence_advice(opt: Optimizer, schedule: &Schedule, step: u64) -> String {
    let mut advice = format!("try a lower --lr (e.g. {:.1e})", opt.lr() / 10.0);
    if !schedule.is_constant() {
        let peak = (0..step).map(|t| schedule.at(t, opt.lr() as f64).lr).fold(0.0, f64::max);
        advice += &format!("; the {} schedule's rate was up to {peak:.1e} by step {step}", schedule.name());
    }
    if opt.weight_decay() != 0.0 {
        advice += &format!(", or a smaller --weight-decay than {}", opt.weight_decay());
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_advice_names_what_raised_the_rate() {
        let adam = Optimizer::adam(0.1);
        assert_eq!(divergence_advice(adam, &Schedule::constant(), 7), "try a lower --lr (e.g. 1.0e-2)");
        // A onecycle run of 100 steps peaks at --lr at step 29; by step 10 it is lower.
        let onecycle = Schedule::from_spec("onecycle", 0, 100, 100).unwrap();
        let early = divergence_advice(adam, &onecycle, 10);
        assert!(early.contains("the onecycle schedule's rate was up to 2.5e-2 by step 10"), "{early}");
        assert!(divergence_advice(adam, &onecycle, 60).contains("up to 1.0e-1 by step 60"));
        let decayed = divergence_advice(adam.with_weight_decay(20.0), &Schedule::constant(), 3);
        assert_eq!(decayed, "try a lower --lr (e.g. 1.0e-2), or a smaller --weight-decay than 20");
    }
}
