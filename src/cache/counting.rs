//! What the cache counts for `/metrics`: lookups by how they were answered,
//! and live slots and driver tasks (the `assumed_cache_slots` and
//! `assumed_cache_drivers` gauges).

use std::sync::OnceLock;

/// How a request was answered: from memory (`hit`), after waiting on a
/// fetch (`wait`), or refused during backoff (`held_back`).
#[derive(Clone, Copy)]
pub(super) enum Lookup {
    Hit,
    Wait,
    HeldBack,
}

/// `assumed_cache_lookups_total`, one handle per result, registered once by
/// `register_metrics` (when the server installs its recorder): a lookup then
/// costs an atomic add, not a labelled key. Without a recorder, nothing.
pub(super) static LOOKUPS: OnceLock<[metrics::Counter; 3]> = OnceLock::new();

pub fn register_metrics() {
    LOOKUPS.get_or_init(|| {
        ["hit", "wait", "held_back"]
            .map(|result| metrics::counter!("assumed_cache_lookups_total", "result" => result))
    });
}

pub(super) fn count_lookup(result: Lookup) {
    if let Some(counters) = LOOKUPS.get() {
        counters[result as usize].increment(1);
    }
}

/// Counts live instances of something in a gauge (slots, driver tasks), so a
/// leak shows on `/metrics` and in tests as a number that keeps growing.
pub(super) struct Live(&'static str);

impl Live {
    pub(super) fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Live(gauge)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}
