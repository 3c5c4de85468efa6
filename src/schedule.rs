//! Learning-rate schedules, as PyTorch's schedulers compute them, as a pure
//! function of the optimizer step: the host evaluates it once per step (in f64)
//! and writes the step's rate into the update's uniform with the rest of the
//! step's parameters, so nothing waits on the GPU, and a resumed run gets the
//! same rates from its step count alone.
//!
//! Steps count from 0 (the first update). With a warmup of W steps the rate
//! rises linearly to the schedule's start over steps 0..W (step t gets
//! (t+1)/W of it), and the schedule then runs over the remaining steps.

use anyhow::{bail, Result};

use crate::arch::quoted;
use std::f64::consts::PI;

/// The shape of the learning rate over a run of `total` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// The base rate throughout.
    Constant,
    /// StepLR: multiplied by `gamma` every `every` steps.
    Step { every: u64, gamma: f64 },
    /// CosineAnnealingLR with eta_min 0: from the base rate down to 0.
    Cosine,
    /// OneCycleLR (pct_start 0.3, cosine annealing, div_factor 25, final_div_factor
    /// 1e4, cycle_momentum from 0.95 down to 0.85 and back): the base rate is the peak.
    OneCycle,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub shape: Shape,
    /// Steps of linear warmup before the shape starts (OneCycle has its own: 0 here).
    pub warmup: u64,
    /// Steps in the whole run, warmup included.
    pub total: u64,
}

/// A step's learning rate, and for OneCycle the momentum (SGD's momentum or
/// Adam's beta1) it cycles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRate {
    pub lr: f64,
    pub momentum: Option<f64>,
}

const ONE_CYCLE_PCT_START: f64 = 0.3;
const ONE_CYCLE_DIV: f64 = 25.0;
const ONE_CYCLE_FINAL_DIV: f64 = 1e4;
const ONE_CYCLE_MOMENTUM: (f64, f64) = (0.85, 0.95);

/// PyTorch's `_annealing_cos`: from `start` at pct 0 to `end` at pct 1.
fn annealing_cos(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0)
}

// A checked schedule's only float, `gamma`, is finite: equality is reflexive, and
// `Position` (which carries the schedule) can compare as a whole.
impl Eq for Schedule {}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::constant()
    }
}

impl Schedule {
    pub fn constant() -> Self {
        Schedule { shape: Shape::Constant, warmup: 0, total: 0 }
    }

    /// Refuse a schedule that cannot run: a shape over no steps, a warmup past the run.
    pub fn check(&self) -> Result<()> {
        match self.shape {
            Shape::Step { every: 0, .. } => bail!("a step schedule needs a positive step interval"),
            Shape::Step { gamma, .. } if !(gamma.is_finite() && gamma > 0.0) => {
                bail!("a step schedule needs a positive, finite gamma, not {gamma}")
            }
            Shape::OneCycle if self.warmup > 0 => bail!("onecycle warms up by itself; drop the warmup"),
            Shape::Cosine | Shape::OneCycle if self.total == 0 => {
                bail!("a {} schedule needs the run's length in steps", self.name())
            }
            _ => {}
        }
        if self.warmup > 0 && self.total > 0 && self.warmup >= self.total {
            bail!("a warmup of {} steps leaves nothing of a {}-step run", self.warmup, self.total);
        }
        Ok(())
    }

    /// Whether the shape is laid over the run's `total` steps (cosine, onecycle):
    /// past them every step would run at its final rate.
    pub fn spans_run(&self) -> bool {
        matches!(self.shape, Shape::Cosine | Shape::OneCycle)
    }

    /// Whether every step runs at the base rate (nothing to apply per step).
    pub fn is_constant(&self) -> bool {
        self.shape == Shape::Constant && self.warmup == 0
    }

    pub fn name(&self) -> &'static str {
        match self.shape {
            Shape::Constant => "constant",
            Shape::Step { .. } => "step",
            Shape::Cosine => "cosine",
            Shape::OneCycle => "onecycle",
        }
    }

    /// The rate of step `t` (from 0) for base rate `base`.
    pub fn at(&self, t: u64, base: f64) -> StepRate {
        if t < self.warmup {
            return StepRate { lr: base * (t + 1) as f64 / self.warmup as f64, momentum: None };
        }
        let (t, total) = (t - self.warmup, self.total.saturating_sub(self.warmup));
        match self.shape {
            Shape::Constant => StepRate { lr: base, momentum: None },
            Shape::Step { every, gamma } => StepRate { lr: base * gamma.powi((t / every) as i32), momentum: None },
            Shape::Cosine => {
                let t = t.min(total);
                StepRate { lr: base * (1.0 + (PI * t as f64 / total as f64).cos()) / 2.0, momentum: None }
            }
            Shape::OneCycle => {
                let initial = base / ONE_CYCLE_DIV;
                let min = initial / ONE_CYCLE_FINAL_DIV;
                let (lo, hi) = ONE_CYCLE_MOMENTUM;
                // PyTorch's phase ends, as floats: the peak at pct_start·T - 1, the end at T - 1.
                let peak = ONE_CYCLE_PCT_START * total as f64 - 1.0;
                let end = total as f64 - 1.0;
                let t = (t as f64).min(end);
                let (lr, momentum) = if t <= peak {
                    let pct = t / peak;
                    (annealing_cos(initial, base, pct), annealing_cos(hi, lo, pct))
                } else {
                    let pct = (t - peak) / (end - peak);
                    (annealing_cos(base, min, pct), annealing_cos(lo, hi, pct))
                };
                StepRate { lr, momentum: Some(momentum) }
            }
        }
    }

    /// A schedule as `--schedule` names it: `constant`, `cosine`, `onecycle`, or
    /// `step[:EVERY[:GAMMA]]` (StepLR; by default every epoch, gamma 0.1, PyTorch's
    /// default), with `warmup` steps of linear warmup, over a run of `total` steps
    /// whose epochs take `epoch_steps` each.
    pub fn from_spec(spec: &str, warmup: u64, total: u64, epoch_steps: u64) -> Result<Schedule> {
        let mut parts = spec.split(':');
        let kind = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        let shape = match (kind, rest.as_slice()) {
            ("constant", []) => Shape::Constant,
            ("cosine", []) => Shape::Cosine,
            ("onecycle", []) => Shape::OneCycle,
            ("step", rest) if rest.len() <= 2 => {
                let every = match rest.first() {
                    None => epoch_steps.max(1),
                    Some(v) => {
                        v.parse().map_err(|_| anyhow::anyhow!("step schedule: {} is not a step count", quoted(v)))?
                    }
                };
                let gamma = match rest.get(1) {
                    None => 0.1,
                    Some(v) => {
                        v.parse().map_err(|_| anyhow::anyhow!("step schedule: {} is not a number", quoted(v)))?
                    }
                };
                Shape::Step { every, gamma }
            }
            _ => {
                bail!("unknown schedule {} (expected constant, step[:EVERY[:GAMMA]], cosine or onecycle)", quoted(spec))
            }
        };
        let schedule = Schedule { shape, warmup, total };
        schedule.check()?;
        Ok(schedule)
    }

    /// The schedule as checkpoint metadata, e.g. `cosine warmup=100 total=938`.
    pub fn to_metadata(&self) -> String {
        let tail = format!("warmup={} total={}", self.warmup, self.total);
        match self.shape {
            Shape::Step { every, gamma } => format!("step every={every} gamma={gamma} {tail}"),
            _ => format!("{} {tail}", self.name()),
        }
    }

    /// The schedule written by `to_metadata`.
    pub fn from_metadata(s: &str) -> Result<Schedule> {
        let shown = quoted(s);
        let mut words = s.split_whitespace();
        let kind = words.next().unwrap_or("");
        let mut fields = std::collections::HashMap::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else { bail!("schedule {shown}: {} is not key=value", quoted(w)) };
            if fields.insert(k, v).is_some() {
                bail!("schedule {shown}: {} given twice", quoted(k));
            }
        }
        let mut take = |k: &str| fields.remove(k).ok_or_else(|| anyhow::anyhow!("schedule {shown}: no '{k}'"));
        let int = |v: &str| {
            v.parse::<u64>().map_err(|_| anyhow::anyhow!("schedule {shown}: {} is not a step count", quoted(v)))
        };
        let (warmup, total) = (int(take("warmup")?)?, int(take("total")?)?);
        let shape = match kind {
            "constant" => Shape::Constant,
            "cosine" => Shape::Cosine,
            "onecycle" => Shape::OneCycle,
            "step" => {
                let every = int(take("every")?)?;
                let gamma = take("gamma")?;
                let gamma =
                    gamma.parse().map_err(|_| anyhow::anyhow!("schedule {shown}: bad gamma {}", quoted(gamma)))?;
                Shape::Step { every, gamma }
            }
            _ => bail!("unknown schedule {} (expected constant, step, cosine or onecycle)", quoted(kind)),
        };
        if let Some(k) = fields.keys().next() {
            bail!("schedule {shown}: unknown field {}", quoted(k));
        }
        let schedule = Schedule { shape, warmup, total };
        schedule.check()?;
        Ok(schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_specs_parse_with_pytorch_defaults() {
        let spec = |s: &str, warmup| Schedule::from_spec(s, warmup, 1000, 100);
        assert_eq!(spec("cosine", 50).unwrap(), Schedule { shape: Shape::Cosine, warmup: 50, total: 1000 });
        assert_eq!(spec("step", 0).unwrap().shape, Shape::Step { every: 100, gamma: 0.1 });
        assert_eq!(spec("step:300", 0).unwrap().shape, Shape::Step { every: 300, gamma: 0.1 });
        assert_eq!(spec("step:300:0.5", 0).unwrap().shape, Shape::Step { every: 300, gamma: 0.5 });
        assert!(spec("constant", 0).unwrap().is_constant());
        assert!(!spec("constant", 10).unwrap().is_constant(), "a warmup is applied per step");
        for bad in ["", "linear", "cosine:3", "step:0", "step:x", "step:10:-1", "step:1:2:3", "onecycle"] {
            let warmup = if bad == "onecycle" { 10 } else { 0 };
            assert!(spec(bad, warmup).is_err(), "{bad}");
        }
        assert!(spec("cosine", 1000).is_err(), "a warmup as long as the run");
    }

    #[test]
    fn metadata_round_trips_and_refuses_nonsense() {
        for schedule in [
            Schedule::constant(),
            Schedule { shape: Shape::Step { every: 300, gamma: 0.5 }, warmup: 10, total: 938 },
            Schedule { shape: Shape::Cosine, warmup: 50, total: 938 },
            Schedule { shape: Shape::OneCycle, warmup: 0, total: 469 },
        ] {
            assert_eq!(Schedule::from_metadata(&schedule.to_metadata()).unwrap(), schedule);
        }
        for bad in [
            "",
            "cosine total=5",
            "cosine warmup=9 total=5",
            "step warmup=0 total=9 every=0 gamma=0.1",
            "onecycle warmup=3 total=9",
            "cosine warmup=0 total=9 extra=1",
            "linear warmup=0 total=9",
        ] {
            assert!(Schedule::from_metadata(bad).is_err(), "{bad}");
        }
    }
}
