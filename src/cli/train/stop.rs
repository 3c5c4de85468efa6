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

/// What to lower after the loss diverged at `step`: the learning rate, and the weight
/// decay when there is one (lr × decay past 1 flips the weights' signs under AdamW). A
/// step schedule with a gamma over 1 is the one schedule that takes the rate above
/// `--lr` (warmup, cosine and onecycle peak at it): then the advice says how far.
pub fn divergence_advice(opt: Optimizer, schedule: &Schedule, step: u64) -> String {
    let lr = opt.lr();
    let mut advice = format!("try a lower --lr (e.g. {:.1e})", lr / 10.0);
    if opt.weight_decay() != 0.0 {
        advice += &format!(" or a smaller --weight-decay than {}", opt.weight_decay());
    }
    let peak = (0..step).map(|t| schedule.at(t, lr as f64).lr).fold(0.0, f64::max);
    if peak > lr as f64 * (1.0 + 1e-6) {
        advice += &format!("; the {} schedule had raised the rate to {peak:.1e} by step {step}", schedule.name());
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_advice_names_the_weight_decay_and_a_raised_rate() {
        let adam = Optimizer::adam(0.1);
        assert_eq!(divergence_advice(adam, &Schedule::constant(), 7), "try a lower --lr (e.g. 1.0e-2)");
        // Warmup, cosine and onecycle never go above --lr: nothing to add.
        for (spec, warmup) in [("cosine", 3), ("onecycle", 0)] {
            let s = Schedule::from_spec(spec, warmup, 100, 100).unwrap();
            assert_eq!(divergence_advice(adam, &s, 60), "try a lower --lr (e.g. 1.0e-2)", "{spec}");
        }
        // ×10 every 2 steps: steps 0..5 ran at up to 0.1 × 10² (step 4).
        let rising = Schedule::from_spec("step:2:10", 0, 100, 100).unwrap();
        assert_eq!(
            divergence_advice(adam.with_weight_decay(20.0), &rising, 5),
            "try a lower --lr (e.g. 1.0e-2) or a smaller --weight-decay than 20; the step schedule had raised the rate to 1.0e1 by step 5"
        );
    }
}
