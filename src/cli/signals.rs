//! The signals `gpu-cnn train` catches so that no work is lost: SIGINT, SIGTERM and
//! SIGHUP. The first is only noted (`caught`), and the loop stops after the step in
//! flight; a second one of any of them ends the process at once, as if none were
//! caught (an atomic write then leaves the previous files and a temporary that the
//! next run removes). A signal the parent set to be ignored stays ignored:
//! `nohup gpu-cnn train &` must go on when the terminal closes.

#[cfg(unix)]
pub use unix::{catch, caught, name};

#[cfg(not(unix))]
pub use other::{catch, caught, name};

#[cfg(unix)]
mod unix {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::flag;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    static ARMED: AtomicBool = AtomicBool::new(false);
    static CAUGHT: AtomicUsize = AtomicUsize::new(0);

    pub fn catch() -> std::io::Result<()> {
        let ignored = ignored();
        for sig in [SIGINT, SIGTERM, SIGHUP].into_iter().filter(|s| !ignored.contains(s)) {
            // Registered first, so it sees ARMED as the signal before this one left it.
            flag::register_conditional_default(sig, &ARMED)?;
            flag::register_usize(sig, &CAUGHT, sig as usize)?;
            flag::register(sig, &ARMED)?;
        }
        Ok(())
    }

    /// The signals this process ignores, from Linux's /proc/self/status (`SigIgn`, a hex
    /// mask with bit n-1 for signal n): std has no safe way to ask, and a handler
    /// installed over SIG_IGN would undo nohup. Elsewhere: none.
    fn ignored() -> Vec<i32> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        (1..=64).filter(|s| mask >> (s - 1) & 1 == 1).collect()
    }

    pub fn caught() -> Option<i32> {
        match CAUGHT.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }

    pub fn name(sig: i32) -> &'static str {
        match sig {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            SIGHUP => "SIGHUP",
            _ => "a signal",
        }
    }
}

/// Elsewhere the default actions stay: a signal ends the run at once, and the last
/// checkpoint (`--checkpoint-every`) is what is left.
#[cfg(not(unix))]
mod other {
    pub fn catch() -> std::io::Result<()> {
        Ok(())
    }
    pub fn caught() -> Option<i32> {
        None
    }
    pub fn name(_: i32) -> &'static str {
        "a signal"
    }
}
