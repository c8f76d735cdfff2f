//! The log-arbiter rule: an event is valid only if its version is exactly one more than the last
//! valid event of its aggregate before it in partition order. Every reader applies this rule, so
//! duplicates and writes from stale writers are ignored identically everywhere.

use std::collections::HashMap;

/// What the rule says about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next version: apply it.
    Valid,
    /// A version already taken (a duplicate or a stale writer's event): ignore it.
    Duplicate,
    /// A version beyond the next one: ignore it.
    Gap,
}

/// Judges an event of version `version` when the last valid version is `last_valid` (0 = none).
pub fn judge(last_valid: i64, version: i64) -> Verdict {
    if version == last_valid + 1 {
        Verdict::Valid
    } else if version <= last_valid {
        Verdict::Duplicate
    } else {
        Verdict::Gap
    }
}

/// Remembers the last valid version of every aggregate seen.
#[derive(Debug, Default, Clone)]
pub struct VersionArbiter {
    last_valid: HashMap<String, i64>,
}

impl VersionArbiter {
    /// Judges the event and, when valid, records its version.
    pub fn admit(&mut self, aggregate_id: &str, version: i64) -> Verdict {
        let last = self.last_valid.get(aggregate_id).copied().unwrap_or(0);
        let verdict = judge(last, version);
        if verdict == Verdict::Valid {
            self.last_valid.insert(aggregate_id.to_string(), version);
        }
        verdict
    }

    /// The last valid version of an aggregate (0 when none).
    pub fn version(&self, aggregate_id: &str) -> i64 {
        self.last_valid.get(aggregate_id).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicates_and_gaps_are_ignored() {
        let mut arbiter = VersionArbiter::default();
        assert_eq!(arbiter.admit("a", 1), Verdict::Valid);
        assert_eq!(arbiter.admit("a", 1), Verdict::Duplicate);
        assert_eq!(arbiter.admit("a", 3), Verdict::Gap);
        assert_eq!(arbiter.admit("a", 2), Verdict::Valid);
        assert_eq!(arbiter.admit("b", 2), Verdict::Gap);
        assert_eq!(arbiter.version("a"), 2);
        assert_eq!(arbiter.version("b"), 0);
    }

    proptest! {
        /// Whatever junk is interleaved, the valid events are exactly 1, 2, 3, … in order, so two
        /// readers of the same partition always agree.
        #[test]
        fn valid_versions_are_contiguous(versions in proptest::collection::vec(0i64..8, 0..64)) {
            let mut arbiter = VersionArbiter::default();
            let valid: Vec<i64> = versions
                .iter()
                .filter(|v| arbiter.admit("x", **v) == Verdict::Valid)
                .copied()
                .collect();
            let expected: Vec<i64> = (1..=valid.len() as i64).collect();
            prop_assert_eq!(valid, expected);
        }
    }
}
