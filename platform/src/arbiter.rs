//! The log-arbiter rule: an event is valid only if its version is exactly one more than the last
//! valid event of its aggregate before it in partition order, and, when it is not the first
//! event of its command, only if that last valid event is its own command's. Every reader
//! applies this rule, so duplicates and writes from stale writers are ignored identically
//! everywhere, and a command's events stand or fall together: an event whose command lost its
//! first version to another writer is never applied on top of that writer's state.

use std::collections::HashMap;

use crate::aggregate::EventMetadata;

/// What the rule says about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next version: apply it.
    Valid,
    /// A version already taken (a duplicate or a stale writer's event): ignore it.
    Duplicate,
    /// A version beyond the next one: ignore it.
    Gap,
    /// The next version, but a later event of a command whose earlier event was ignored.
    Orphaned,
}

/// Judges an event of version `version` when the last valid version is `last_valid` (0 = none),
/// by version alone.
pub fn judge(last_valid: i64, version: i64) -> Verdict {
    if version == last_valid + 1 {
        Verdict::Valid
    } else if version <= last_valid {
        Verdict::Duplicate
    } else {
        Verdict::Gap
    }
}

/// What a reader keeps of an aggregate's last valid event to judge the next one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Head {
    /// Its version (0: the aggregate has no valid event yet).
    pub version: i64,
    /// The command that produced it.
    pub command_id: String,
}

impl Head {
    /// The head after a valid event.
    pub fn of(metadata: &EventMetadata) -> Self {
        Self { version: metadata.aggregate_version, command_id: metadata.command_id.clone() }
    }

    /// Judges the next event of the aggregate with the whole rule.
    pub fn judge(&self, metadata: &EventMetadata) -> Verdict {
        match judge(self.version, metadata.aggregate_version) {
            Verdict::Valid if metadata.command_event_index > 0 && self.command_id != metadata.command_id => {
                Verdict::Orphaned
            }
            verdict => verdict,
        }
    }
}

/// Remembers the head of every aggregate seen.
#[derive(Debug, Default, Clone)]
pub struct VersionArbiter {
    heads: HashMap<String, Head>,
}

impl VersionArbiter {
    /// Judges the event and, when valid, records it as its aggregate's head.
    pub fn admit(&mut self, metadata: &EventMetadata) -> Verdict {
        let head = self.heads.entry(metadata.aggregate_id.clone()).or_default();
        let verdict = head.judge(metadata);
        if verdict == Verdict::Valid {
            *head = Head::of(metadata);
        }
        verdict
    }

    /// The last valid version of an aggregate (0 when none).
    pub fn version(&self, aggregate_id: &str) -> i64 {
        self.heads.get(aggregate_id).map_or(0, |head| head.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(aggregate: &str, version: i64, command: &str, index: i32, count: i32) -> EventMetadata {
        EventMetadata {
            event_id: uuid::Uuid::new_v4(),
            aggregate_id: aggregate.into(),
            aggregate_version: version,
            command_id: command.into(),
            command_event_index: index,
            command_event_count: count,
            occurred_at: 0,
            correlation_id: String::new(),
            causation_id: None,
        }
    }

    fn single(aggregate: &str, version: i64) -> EventMetadata {
        event(aggregate, version, &format!("{aggregate}-{version}"), 0, 1)
    }

    #[test]
    fn duplicates_and_gaps_are_ignored() {
        let mut arbiter = VersionArbiter::default();
        assert_eq!(arbiter.admit(&single("a", 1)), Verdict::Valid);
        assert_eq!(arbiter.admit(&single("a", 1)), Verdict::Duplicate);
        assert_eq!(arbiter.admit(&single("a", 3)), Verdict::Gap);
        assert_eq!(arbiter.admit(&single("a", 2)), Verdict::Valid);
        assert_eq!(arbiter.admit(&single("b", 2)), Verdict::Gap);
        assert_eq!(arbiter.version("a"), 2);
        assert_eq!(arbiter.version("b"), 0);
    }

    #[test]
    fn a_commands_events_stand_or_fall_together() {
        // Two writers decide two events each on version 1; their records interleave.
        let mut arbiter = VersionArbiter::default();
        assert_eq!(arbiter.admit(&single("t", 1)), Verdict::Valid);
        assert_eq!(arbiter.admit(&event("t", 2, "w2", 0, 2)), Verdict::Valid);
        assert_eq!(arbiter.admit(&event("t", 2, "w1", 0, 2)), Verdict::Duplicate);
        // w1's second event has the next version, but its first was ignored.
        assert_eq!(arbiter.admit(&event("t", 3, "w1", 1, 2)), Verdict::Orphaned);
        assert_eq!(arbiter.admit(&event("t", 3, "w2", 1, 2)), Verdict::Valid);
        // A retry of w1 (same command id, decided again on version 3) stands on its own.
        assert_eq!(arbiter.admit(&event("t", 4, "w1", 0, 2)), Verdict::Valid);
        assert_eq!(arbiter.admit(&event("t", 5, "w1", 1, 2)), Verdict::Valid);
        assert_eq!(arbiter.version("t"), 5);
    }

    proptest! {
        /// Whatever junk is interleaved, the valid events are exactly 1, 2, 3, … in order, so two
        /// readers of the same partition always agree.
        #[test]
        fn valid_versions_are_contiguous(versions in proptest::collection::vec(0i64..8, 0..64)) {
            let mut arbiter = VersionArbiter::default();
            let valid: Vec<i64> = versions
                .iter()
                .filter(|v| arbiter.admit(&single("x", **v)) == Verdict::Valid)
                .copied()
                .collect();
            let expected: Vec<i64> = (1..=valid.len() as i64).collect();
            prop_assert_eq!(valid, expected);
        }

        /// However the two-event commands of several writers interleave, a command's second
        /// event is applied only right after its first.
        #[test]
        fn no_event_is_applied_without_its_commands_earlier_one(
            picks in proptest::collection::vec((0usize..3, 0i64..6), 1..40),
        ) {
            let mut arbiter = VersionArbiter::default();
            let mut next_index = [0i32; 3];
            let mut decided_on = [0i64; 3];
            let mut attempts = [0u32; 3];
            let mut valid: Vec<(String, i32)> = Vec::new();
            for (writer, base) in picks {
                if next_index[writer] == 0 {
                    decided_on[writer] = base;
                    attempts[writer] += 1;
                }
                let command = format!("w{writer}-{}", attempts[writer]);
                let index = next_index[writer];
                let metadata = event("x", decided_on[writer] + 1 + i64::from(index), &command, index, 2);
                if arbiter.admit(&metadata) == Verdict::Valid {
                    if index > 0 {
                        prop_assert_eq!(valid.last(), Some(&(command.clone(), index - 1)));
                    }
                    valid.push((command, index));
                }
                next_index[writer] = (index + 1) % 2;
            }
        }
    }
}
