//! Where the registry's timestamps and uids come from: the real clock and random uids in a
//! server, a fixed clock and sequential uids in the test tier, so answers compare as snapshots.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::{SignedDuration, Timestamp};

/// The time the registry stamps on objects (creation, deletion, managed fields).
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until told to move.
pub struct FixedClock(Mutex<Timestamp>);

impl FixedClock {
    pub fn at(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    /// Moves the clock forward (or back, for a negative duration).
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = now.checked_add(by).unwrap_or(*now);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Unique ids: object uids, and the random part of `generateName`.
pub trait Uids: Send + Sync {
    fn next(&self) -> uuid::Uuid;
}

/// Random (version 4) uuids, as upstream.
pub struct RandomUids;

impl Uids for RandomUids {
    fn next(&self) -> uuid::Uuid {
        uuid::Uuid::new_v4()
    }
}

/// `00000000-0000-0000-0000-000000000001`, `…02`, …: predictable, and still unique.
#[derive(Default)]
pub struct SequentialUids(AtomicU64);

impl Uids for SequentialUids {
    fn next(&self) -> uuid::Uuid {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        uuid::Uuid::from_u128(u128::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_uids_count_from_one() {
        let uids = SequentialUids::default();
        assert_eq!(
            uids.next().to_string(),
            "00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(
            uids.next().to_string(),
            "00000000-0000-0000-0000-000000000002"
        );
    }

    #[test]
    fn a_fixed_clock_moves_only_when_advanced() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("timestamp");
        let clock = FixedClock::at(start);
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::from_secs(90));
        assert_eq!(clock.now().to_string(), "2026-01-01T00:01:30Z");
    }
}
