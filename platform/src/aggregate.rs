//! Aggregates as two pure functions, and the envelope events travel in.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An aggregate: state folded from its events, and the rules that turn a command into events.
///
/// Both functions are pure: ids come in with the command, and the decision time (`now`, in
/// milliseconds since the Unix epoch) from the pipeline of the aggregate's owner, so every
/// rule about time runs on one clock whoever sent the command.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// What a client asks for.
    type Command: Send + Sync;
    /// What happened.
    type Event: Clone + Send + Sync + 'static;
    /// Why a command was refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides which events a command produces against the current state at `now`.
    fn decide(&self, command: &Self::Command, now: i64) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state. Holds no business rule.
    fn evolve(self, event: &Self::Event) -> Self;
}

/// The envelope fields every event record carries (DESIGN.md, "The log").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Unique id of this event.
    pub event_id: Uuid,
    /// Id of the aggregate the event belongs to (the record key).
    pub aggregate_id: String,
    /// 1 for the aggregate's first event, then +1 per valid event.
    pub aggregate_version: i64,
    /// Id of the command that produced the event; repeats of it are answered from memory.
    pub command_id: String,
    /// Place of the event among the events its command decided (0 for the first).
    pub command_event_index: i32,
    /// How many events the command decided (1 for most).
    pub command_event_count: i32,
    /// When the command was decided, in milliseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Id shared by everything one client request set off.
    pub correlation_id: String,
    /// Id of the event that caused the command, for commands sent by process managers.
    pub causation_id: Option<String>,
}

impl EventMetadata {
    /// True for the last event of its command: once it is valid, the command is applied.
    pub fn completes_command(&self) -> bool {
        self.command_event_index + 1 >= self.command_event_count
    }
}

/// An event with its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    /// Envelope fields.
    pub metadata: EventMetadata,
    /// The event itself.
    pub event: E,
}

/// A given/when/then harness for aggregate rules: `given(events).when(command).then_expect…`.
pub mod testing {
    use super::Aggregate;

    /// Starts a rule test from the events that happened before.
    pub fn given<A: Aggregate>(events: Vec<A::Event>) -> Given<A> {
        let state = events.iter().fold(A::default(), |state, event| state.evolve(event));
        Given { state, now: 0 }
    }

    /// The state built from the given events.
    pub struct Given<A: Aggregate> {
        state: A,
        now: i64,
    }

    impl<A: Aggregate> Given<A> {
        /// Decides at `now` (ms since the epoch) instead of 0.
        pub fn at(self, now: i64) -> Self {
            Self { now, ..self }
        }

        /// Decides the command against the given state.
        pub fn when(self, command: A::Command) -> Then<A> {
            Then { result: self.state.decide(&command, self.now) }
        }
    }

    /// The outcome of a decision.
    pub struct Then<A: Aggregate> {
        result: Result<Vec<A::Event>, A::Error>,
    }

    impl<A: Aggregate> Then<A>
    where
        A::Event: PartialEq + std::fmt::Debug,
        A::Error: PartialEq,
    {
        /// Asserts that the command produced exactly these events.
        pub fn then_expect_events(self, expected: Vec<A::Event>) {
            match self.result {
                Ok(events) => assert_eq!(events, expected),
                Err(error) => panic!("expected events, got error: {error}"),
            }
        }

        /// Asserts that the command was refused with this error.
        pub fn then_expect_error(self, expected: A::Error) {
            match self.result {
                Ok(events) => panic!("expected error {expected}, got events {events:?}"),
                Err(error) => assert!(error == expected, "expected error {expected}, got {error}"),
            }
        }
    }
}
