//! Avro schema compatibility: the levels a Confluent-compatible registry knows, the check behind
//! each of them, and the build-time gate that keeps the checked-in `.avsc` files readable by
//! their earlier registered versions.
//!
//! "Reader can read writer" is decided by `apache_avro::schema_compatibility`. A *partial*
//! answer (e.g. the reader's union or enum lacks a branch or symbol the writer may use) counts as
//! incompatible, like Confluent's checker does: some data written with the old schema would fail
//! to decode.

use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::{Deserialize, Serialize};

/// A registry compatibility level, as named by Confluent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    /// No check at all.
    None,
    /// The new schema can read data written with the latest registered one.
    #[default]
    Backward,
    /// The new schema can read data written with every registered one.
    BackwardTransitive,
    /// The latest registered schema can read data written with the new one.
    Forward,
    /// Every registered schema can read data written with the new one.
    ForwardTransitive,
    /// Backward and forward against the latest registered schema.
    Full,
    /// Backward and forward against every registered schema.
    FullTransitive,
}

impl CompatibilityLevel {
    /// Every level, in Confluent's documentation order.
    pub const ALL: [CompatibilityLevel; 7] = [
        Self::None,
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
    ];

    /// The Confluent name (`BACKWARD_TRANSITIVE`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether the check covers every registered version rather than only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(self, Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive)
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(self, Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive)
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compatibility level name that is not one of Confluent's seven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Invalid compatibility level '{0}'. Valid values are none, backward, forward, full, \
     backward_transitive, forward_transitive, and full_transitive"
)]
pub struct InvalidCompatibilityLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = InvalidCompatibilityLevel;

    /// Parses a level name case-insensitively, as Confluent does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        Self::ALL
            .into_iter()
            .find(|level| level.as_str() == upper)
            .ok_or_else(|| InvalidCompatibilityLevel(s.to_string()))
    }
}

/// Whether data written with `writer` can always be read with `reader`; the error says why not.
pub fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        // Partial means some written values (a union branch, an enum symbol) cannot be read.
        Ok(Compatibility::Partial) => {
            Err("the reader's schema can read only part of the writer's values (a union branch or \
             enum symbol of the writer is missing in the reader)"
                .to_string())
        }
        Err(error) => Err(error_chain(&error)),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Checks `candidate` against the `existing` versions of a subject (oldest first) under
/// `level`, and returns one message per failed pairing.
///
/// Non-transitive levels only look at the last element of `existing`; an empty `existing` is
/// always compatible.
pub fn check(
    level: CompatibilityLevel,
    candidate: &Schema,
    existing: &[&Schema],
) -> Result<(), Vec<String>> {
    if level == CompatibilityLevel::None || existing.is_empty() {
        return Ok(());
    }
    let start = if level.is_transitive() { 0 } else { existing.len() - 1 };
    let mut reasons = Vec::new();
    for (index, previous) in existing.iter().enumerate().skip(start) {
        // Versions are counted from 1 in messages, like the registry's own numbering.
        let position = index + 1;
        if level.backward()
            && let Err(reason) = can_read(previous, candidate)
        {
            reasons.push(format!(
                "new schema cannot read data written with schema #{position} (BACKWARD): {reason}"
            ));
        }
        if level.forward()
            && let Err(reason) = can_read(candidate, previous)
        {
            reasons.push(format!(
                "schema #{position} cannot read data written with the new schema (FORWARD): {reason}"
            ));
        }
    }
    if reasons.is_empty() { Ok(()) } else { Err(reasons) }
}

/// The build-time gate: `current` (an `.avsc` text) must parse and be able to read data written
/// with every schema text in `previous` (BACKWARD_TRANSITIVE, because replays read events of
/// every age).
///
/// The error names the failing previous schema by its index in `previous` (from 0) and says why.
pub fn check_backward(current: &str, previous: &[String]) -> Result<(), String> {
    let reader = Schema::parse_str(current)
        .map_err(|e| format!("the current schema is invalid: {}", error_chain(&e)))?;
    for (index, text) in previous.iter().enumerate() {
        let writer = Schema::parse_str(text)
            .map_err(|e| format!("previous schema [{index}] is invalid: {}", error_chain(&e)))?;
        can_read(&writer, &reader).map_err(|reason| {
            format!("cannot read data written with previous schema [{index}]: {reason}")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#))
            .unwrap()
    }

    #[test]
    fn levels_parse_case_insensitively_and_print_confluent_names() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(level.as_str().to_lowercase().parse::<CompatibilityLevel>(), Ok(level));
            assert_eq!(level.to_string(), level.as_str());
        }
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
        assert_eq!(CompatibilityLevel::default(), CompatibilityLevel::Backward);
    }

    #[test]
    fn a_new_field_without_default_breaks_backward_but_not_forward() {
        let old = schema(r#"{"name":"a","type":"long"}"#);
        let new = schema(r#"{"name":"a","type":"long"},{"name":"b","type":"string"}"#);
        assert!(check(CompatibilityLevel::Backward, &new, &[&old]).is_err());
        assert!(check(CompatibilityLevel::Forward, &new, &[&old]).is_ok());
        assert!(check(CompatibilityLevel::Full, &new, &[&old]).is_err());
        assert!(check(CompatibilityLevel::None, &new, &[&old]).is_ok());
    }

    #[test]
    fn a_new_field_with_default_is_fully_compatible() {
        let old = schema(r#"{"name":"a","type":"long"}"#);
        let new = schema(r#"{"name":"a","type":"long"},{"name":"b","type":"string","default":""}"#);
        assert!(check(CompatibilityLevel::FullTransitive, &new, &[&old]).is_ok());
    }

    #[test]
    fn transitive_levels_look_at_every_version() {
        let v1 = schema(r#"{"name":"a","type":"long"}"#);
        // v2 dropped `a` and added `b` with a default: v2 can read v1, v3 cannot read v1.
        let v2 = schema(r#"{"name":"b","type":"string","default":""}"#);
        let v3 = schema(r#"{"name":"b","type":"string","default":""},{"name":"a","type":"int"}"#);
        assert!(check(CompatibilityLevel::Backward, &v3, &[&v1, &v2]).is_err(), "v2 has no a");
        let v3 = schema(
            r#"{"name":"b","type":"string","default":""},{"name":"a","type":"long","default":0}"#,
        );
        assert!(check(CompatibilityLevel::Backward, &v3, &[&v1, &v2]).is_ok());
        let v3 = schema(
            r#"{"name":"b","type":"string","default":""},{"name":"a","type":"string","default":""}"#,
        );
        assert!(check(CompatibilityLevel::Backward, &v3, &[&v1, &v2]).is_ok());
        let reasons = check(CompatibilityLevel::BackwardTransitive, &v3, &[&v1, &v2]).unwrap_err();
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("#1"), "{reasons:?}");
    }

    #[test]
    fn a_removed_union_branch_is_incompatible() {
        let old = schema(r#"{"name":"a","type":["null","string","long"]}"#);
        let new = schema(r#"{"name":"a","type":["null","string"]}"#);
        assert!(can_read(&old, &new).is_err());
        assert!(can_read(&new, &old).is_ok());
    }

    #[test]
    fn the_gate_names_the_failing_previous_schema() {
        let v1 =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#.to_string();
        let current = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":"long"}]}"#;
        let error = check_backward(current, std::slice::from_ref(&v1)).unwrap_err();
        assert!(error.contains("[0]") && error.contains("'b'"), "{error}");
        assert!(check_backward(&v1, std::slice::from_ref(&v1)).is_ok());
        assert!(check_backward("{", &[]).is_err());
    }
}
