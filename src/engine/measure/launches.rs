//! The GPU kernels a piece of work launches, counted (and timed natively) through cubecl's
//! launch observer: `finetune bench` counts a step's kernels, `finetune profile` times them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cubecl_runtime::logging::{
    Duration, LaunchObservation, LaunchObserver, TimingMethod, TimingRequest,
};

/// The GPU kernels launched while a [`Kernels::watch`] guard lives (burn's CPU backend launches
/// none), each with its device time when timed. Process-wide: run nothing else meanwhile.
#[derive(Default)]
pub struct Kernels {
    timed: bool,
    seen: Mutex<BTreeMap<&'static str, (usize, f64)>>,
}

impl LaunchObserver for Kernels {
    fn launched(&self, kernel: &'static str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.entry(kernel).or_insert((0, 0.0)).0 += 1;
        }
    }

    fn timing(&self) -> TimingRequest {
        // Resolved waits for each kernel before the next: right for each one's cost.
        if self.timed {
            TimingRequest::Resolved
        } else {
            TimingRequest::None
        }
    }

    fn timed(&self, kernel: &'static str, duration: Duration, _method: TimingMethod) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.entry(kernel).or_insert((0, 0.0)).1 += duration.as_secs_f64();
        }
    }
}

impl Kernels {
    /// Counts (and times, if `timed`) every launch until the guard drops.
    pub fn watch(timed: bool) -> (Arc<Kernels>, LaunchObservation) {
        let kernels = Arc::new(Kernels {
            timed,
            ..Kernels::default()
        });
        let guard = LaunchObservation::new(kernels.clone());
        (kernels, guard)
    }

    /// Launches seen so far.
    pub fn launches(&self) -> usize {
        self.seen
            .lock()
            .map(|s| s.values().map(|v| v.0).sum())
            .unwrap_or(0)
    }

    /// Launches and seconds of each kernel seen so far, by its full name.
    pub fn seen(&self) -> BTreeMap<&'static str, (usize, f64)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
