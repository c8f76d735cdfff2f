//! The registry as a pure state machine: questions are answered from the state, and every change
//! is a [`RegistryRecord`] that [`RegistryState::apply`] folds in, so the same state is rebuilt
//! by replaying the log.

use std::collections::{BTreeMap, HashMap};

use apache_avro::Schema;
use serde::Serialize;

use super::record::RegistryRecord;
use crate::compatibility::{self, CompatibilityLevel};

/// Why a registry question or command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The subject has no versions.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// The subject exists but not this version.
    #[error("Version {version} not found.")]
    VersionNotFound {
        /// The subject asked for.
        subject: String,
        /// The version asked for.
        version: u32,
    },
    /// No such schema (by id, or under the subject).
    #[error("Schema not found")]
    SchemaNotFound,
    /// The subject has no compatibility level of its own.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectLevelNotConfigured(String),
    /// The schema text is not a valid Avro schema (or not one this registry accepts).
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    /// The version is neither a positive 32-bit number nor `latest`.
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between \
         [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    /// The compatibility level name is unknown.
    #[error(transparent)]
    InvalidCompatibilityLevel(#[from] compatibility::InvalidCompatibilityLevel),
    /// The schema breaks the subject's compatibility level.
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", \
         details: {reasons:?}"
    )]
    Incompatible {
        /// The subject.
        subject: String,
        /// One message per failed check.
        reasons: Vec<String>,
    },
}

/// A version of a subject as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaVersion {
    /// Subject name.
    pub subject: String,
    /// Version within the subject.
    pub version: u32,
    /// Global schema id.
    pub id: u32,
    /// Schema text.
    pub schema: String,
}

/// `latest` or a version number, as in `/subjects/{subject}/versions/{version}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    /// The highest version.
    Latest,
    /// A version number.
    Number(u32),
}

impl VersionSpec {
    /// Parses `latest`, `-1` (Confluent's alias of latest) or a number in `1..=2^31-1`.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        if text == "latest" || text == "-1" {
            return Ok(Self::Latest);
        }
        match text.parse::<u32>() {
            Ok(n) if (1..=i32::MAX as u32).contains(&n) => Ok(Self::Number(n)),
            _ => Err(RegistryError::InvalidVersion(text.to_string())),
        }
    }
}

/// A schema parsed once, with the form used to recognise it again.
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    /// The text as submitted.
    pub text: String,
    /// The identity of the schema: its parsed form written back as JSON.
    ///
    /// Not Avro's Parsing Canonical Form, which drops defaults, docs and logical types: two
    /// schemas differing only there read data differently and must get different ids.
    pub canonical: String,
    /// The parsed schema.
    pub schema: Schema,
}

impl ParsedSchema {
    /// Parses an Avro schema text.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        if text.trim().is_empty() {
            return Err(RegistryError::InvalidSchema("Empty schema".to_string()));
        }
        let schema =
            Schema::parse_str(text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        let canonical = serde_json::to_string(&schema)
            .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        Ok(Self { text: text.to_string(), canonical, schema })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SubjectVersion {
    version: u32,
    id: u32,
}

/// What registering a schema under a subject comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The schema already is a version of the subject: answer with it, change nothing.
    Existing(SchemaVersion),
    /// A new version: append `record`, apply it, then answer with `id`.
    New {
        /// The record to append.
        record: RegistryRecord,
        /// The schema id to answer with.
        id: u32,
    },
}

/// What [`RegistryState::apply`] did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Changed,
    /// The record was already reflected in the state.
    Unchanged,
    /// The record contradicts the state (it can only come from a second writer) and was
    /// skipped; the first record for an id or a subject version wins, on every replay alike.
    Conflict(String),
}

/// Subjects, versions, schema ids and compatibility levels.
#[derive(Debug, Clone, Default)]
pub struct RegistryState {
    schemas: BTreeMap<u32, ParsedSchema>,
    ids_by_canonical: HashMap<String, u32>,
    subjects: BTreeMap<String, Vec<SubjectVersion>>,
    global_level: CompatibilityLevel,
    subject_levels: BTreeMap<String, CompatibilityLevel>,
}

impl RegistryState {
    /// Decides what registering `schema` under `subject` means: the existing version, a new
    /// version (with a new id, or the id the same schema has under another subject), or an error
    /// when the schema is invalid or breaks the subject's compatibility level.
    pub fn prepare_register(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Registration, RegistryError> {
        let parsed = ParsedSchema::parse(schema)?;
        let versions = self.subjects.get(subject).map(Vec::as_slice).unwrap_or_default();
        if let Some(existing) = self.find_in_subject(versions, &parsed.canonical) {
            return Ok(Registration::Existing(self.view(subject, existing)));
        }
        let previous: Vec<&Schema> = versions.iter().map(|v| &self.schemas[&v.id].schema).collect();
        compatibility::check(self.effective_level(subject), &parsed.schema, &previous).map_err(
            |reasons| RegistryError::Incompatible { subject: subject.to_string(), reasons },
        )?;
        let id =
            self.ids_by_canonical.get(&parsed.canonical).copied().unwrap_or_else(|| self.next_id());
        let version = versions.last().map_or(1, |v| v.version + 1);
        // Keep the text the id was first registered with, so an id always shows the same text.
        let text = self.schemas.get(&id).map_or(parsed.text, |s| s.text.clone());
        Ok(Registration::New {
            record: RegistryRecord::SchemaRegistered {
                subject: subject.to_string(),
                version,
                id,
                schema: text,
            },
            id,
        })
    }

    /// The version of `subject` that holds `schema`.
    pub fn lookup(&self, subject: &str, schema: &str) -> Result<SchemaVersion, RegistryError> {
        let versions = self.versions_of(subject)?;
        let parsed = ParsedSchema::parse(schema)?;
        self.find_in_subject(versions, &parsed.canonical)
            .map(|v| self.view(subject, v))
            .ok_or(RegistryError::SchemaNotFound)
    }

    /// The schema text with this id.
    pub fn schema_by_id(&self, id: u32) -> Result<&str, RegistryError> {
        self.schemas.get(&id).map(|s| s.text.as_str()).ok_or(RegistryError::SchemaNotFound)
    }

    /// Every (subject, version) that uses schema `id`.
    pub fn versions_of_id(&self, id: u32) -> Result<Vec<(String, u32)>, RegistryError> {
        if !self.schemas.contains_key(&id) {
            return Err(RegistryError::SchemaNotFound);
        }
        Ok(self
            .subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions.iter().filter(|v| v.id == id).map(|v| (subject.clone(), v.version))
            })
            .collect())
    }

    /// Every subject with at least one version, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.subjects.keys().cloned().collect()
    }

    /// The version numbers of `subject`, ascending.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        Ok(self.versions_of(subject)?.iter().map(|v| v.version).collect())
    }

    /// One version of `subject`.
    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
    ) -> Result<SchemaVersion, RegistryError> {
        let versions = self.versions_of(subject)?;
        let found = match spec {
            VersionSpec::Latest => versions.last(),
            VersionSpec::Number(n) => versions.iter().find(|v| v.version == n),
        };
        match (found, spec) {
            (Some(v), _) => Ok(self.view(subject, *v)),
            (None, VersionSpec::Number(version)) => {
                Err(RegistryError::VersionNotFound { subject: subject.to_string(), version })
            }
            // A subject only exists with at least one version.
            (None, VersionSpec::Latest) => Err(RegistryError::SubjectNotFound(subject.to_string())),
        }
    }

    /// Whether `schema` could be registered under `subject`: against one version when `against`
    /// is given (a missing subject or version is an error), otherwise against the versions the
    /// subject's level looks at (a missing subject is compatible). The inner error lists the
    /// reasons of an incompatibility.
    pub fn check_compatibility(
        &self,
        subject: &str,
        schema: &str,
        against: Option<VersionSpec>,
    ) -> Result<Result<(), Vec<String>>, RegistryError> {
        let parsed = ParsedSchema::parse(schema)?;
        let level = self.effective_level(subject);
        match against {
            Some(spec) => {
                let version = self.version(subject, spec)?;
                let previous = &self.schemas[&version.id].schema;
                Ok(compatibility::check(level, &parsed.schema, &[previous]))
            }
            None => {
                let versions = self.subjects.get(subject).map(Vec::as_slice).unwrap_or_default();
                let previous: Vec<&Schema> =
                    versions.iter().map(|v| &self.schemas[&v.id].schema).collect();
                Ok(compatibility::check(level, &parsed.schema, &previous))
            }
        }
    }

    /// The global level (`subject: None`), or the subject's own level; without one, the global
    /// level when `default_to_global`, else [`RegistryError::SubjectLevelNotConfigured`].
    pub fn compatibility_level(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel, RegistryError> {
        match subject {
            None => Ok(self.global_level),
            Some(subject) => match self.subject_levels.get(subject) {
                Some(level) => Ok(*level),
                None if default_to_global => Ok(self.global_level),
                None => Err(RegistryError::SubjectLevelNotConfigured(subject.to_string())),
            },
        }
    }

    /// The level that governs `subject`: its own, else the global one.
    pub fn effective_level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_levels.get(subject).copied().unwrap_or(self.global_level)
    }

    /// The record that sets a level, globally (`subject: None`) or for one subject.
    pub fn prepare_set_level(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> RegistryRecord {
        RegistryRecord::CompatibilitySet { subject: subject.map(str::to_string), level }
    }

    /// Folds one record into the state. Deterministic and idempotent, so a replay of the log
    /// (with duplicates or not) always yields the same state.
    pub fn apply(&mut self, record: &RegistryRecord) -> Applied {
        match record {
            RegistryRecord::SchemaRegistered { subject, version, id, schema } => {
                self.apply_registered(subject, *version, *id, schema)
            }
            RegistryRecord::CompatibilitySet { subject: None, level } => {
                if self.global_level == *level {
                    return Applied::Unchanged;
                }
                self.global_level = *level;
                Applied::Changed
            }
            RegistryRecord::CompatibilitySet { subject: Some(subject), level } => {
                match self.subject_levels.insert(subject.clone(), *level) {
                    Some(previous) if previous == *level => Applied::Unchanged,
                    _ => Applied::Changed,
                }
            }
        }
    }

    fn apply_registered(&mut self, subject: &str, version: u32, id: u32, schema: &str) -> Applied {
        let parsed = match ParsedSchema::parse(schema) {
            Ok(parsed) => parsed,
            Err(error) => return Applied::Conflict(format!("schema id {id}: {error}")),
        };
        if let Some(known) = self.schemas.get(&id)
            && known.canonical != parsed.canonical
        {
            return Applied::Conflict(format!("schema id {id} is already bound to another schema"));
        }
        let versions = self.subjects.entry(subject.to_string()).or_default();
        match versions.binary_search_by_key(&version, |v| v.version) {
            Ok(index) if versions[index].id == id => return Applied::Unchanged,
            Ok(_) => {
                return Applied::Conflict(format!(
                    "version {version} of subject '{subject}' already has another schema"
                ));
            }
            Err(index) => versions.insert(index, SubjectVersion { version, id }),
        }
        // The first id of a schema text stays its id for new registrations.
        self.ids_by_canonical.entry(parsed.canonical.clone()).or_insert(id);
        self.schemas.entry(id).or_insert(parsed);
        Applied::Changed
    }

    fn versions_of(&self, subject: &str) -> Result<&[SubjectVersion], RegistryError> {
        self.subjects
            .get(subject)
            .filter(|versions| !versions.is_empty())
            .map(Vec::as_slice)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))
    }

    fn find_in_subject(
        &self,
        versions: &[SubjectVersion],
        canonical: &str,
    ) -> Option<SubjectVersion> {
        versions.iter().copied().find(|v| self.schemas[&v.id].canonical == canonical)
    }

    fn view(&self, subject: &str, version: SubjectVersion) -> SchemaVersion {
        SchemaVersion {
            subject: subject.to_string(),
            version: version.version,
            id: version.id,
            schema: self.schemas[&version.id].text.clone(),
        }
    }

    fn next_id(&self) -> u32 {
        self.schemas.keys().next_back().map_or(1, |id| id + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str =
        r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"long"}]}"#;
    const V2_DEFAULT: &str = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"long"},{"name":"b","type":"string","default":""}]}"#;
    const V2_NO_DEFAULT: &str = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"long"},{"name":"b","type":"string"}]}"#;

    /// Registers through the same path the service takes: prepare, then apply the record.
    fn register(
        state: &mut RegistryState,
        subject: &str,
        schema: &str,
    ) -> Result<u32, RegistryError> {
        match state.prepare_register(subject, schema)? {
            Registration::Existing(version) => Ok(version.id),
            Registration::New { record, id } => {
                assert_eq!(state.apply(&record), Applied::Changed);
                Ok(id)
            }
        }
    }

    fn set_level(state: &mut RegistryState, subject: Option<&str>, level: CompatibilityLevel) {
        let record = state.prepare_set_level(subject, level);
        state.apply(&record);
    }

    #[test]
    fn the_first_schema_gets_id_1_and_version_1() {
        let mut state = RegistryState::default();
        assert_eq!(register(&mut state, "s", V1), Ok(1));
        let latest = state.version("s", VersionSpec::Latest).unwrap();
        assert_eq!((latest.version, latest.id, latest.schema.as_str()), (1, 1, V1));
        assert_eq!(state.subjects(), vec!["s".to_string()]);
    }

    #[test]
    fn registering_the_same_schema_again_changes_nothing() {
        let mut state = RegistryState::default();
        register(&mut state, "s", V1).unwrap();
        // Whitespace and key order do not make a different schema.
        let reformatted = r#"{ "namespace":"t", "name":"R", "type":"record", "fields":[{"type":"long","name":"a"}] }"#;
        assert!(
            matches!(state.prepare_register("s", reformatted), Ok(Registration::Existing(v)) if v.id == 1 && v.version == 1)
        );
        assert_eq!(state.versions("s"), Ok(vec![1]));
    }

    #[test]
    fn the_same_schema_under_another_subject_gets_the_same_id() {
        let mut state = RegistryState::default();
        assert_eq!(register(&mut state, "a", V1), Ok(1));
        assert_eq!(register(&mut state, "b", V2_DEFAULT), Ok(2));
        assert_eq!(register(&mut state, "b2", V1), Ok(1));
        assert_eq!(state.version("b2", VersionSpec::Number(1)).unwrap().id, 1);
        assert_eq!(state.versions_of_id(1), Ok(vec![("a".to_string(), 1), ("b2".to_string(), 1)]));
    }

    #[test]
    fn a_default_makes_a_different_schema() {
        let mut state = RegistryState::default();
        set_level(&mut state, None, CompatibilityLevel::None);
        assert_eq!(register(&mut state, "s", V2_NO_DEFAULT), Ok(1));
        assert_eq!(register(&mut state, "s", V2_DEFAULT), Ok(2));
    }

    #[test]
    fn an_incompatible_version_is_refused_under_backward_and_accepted_under_none() {
        let mut state = RegistryState::default();
        register(&mut state, "s", V1).unwrap();
        let error = register(&mut state, "s", V2_NO_DEFAULT).unwrap_err();
        assert!(
            matches!(&error, RegistryError::Incompatible { subject, reasons } if subject == "s" && !reasons.is_empty())
        );
        assert_eq!(
            state.check_compatibility("s", V2_NO_DEFAULT, None),
            Ok(Err(match error {
                RegistryError::Incompatible { reasons, .. } => reasons,
                _ => unreachable!(),
            }))
        );
        set_level(&mut state, Some("s"), CompatibilityLevel::None);
        assert_eq!(register(&mut state, "s", V2_NO_DEFAULT), Ok(2));
        assert_eq!(state.versions("s"), Ok(vec![1, 2]));
    }

    #[test]
    fn a_compatible_version_becomes_the_next_version() {
        let mut state = RegistryState::default();
        register(&mut state, "s", V1).unwrap();
        assert_eq!(
            state.check_compatibility("s", V2_DEFAULT, Some(VersionSpec::Latest)),
            Ok(Ok(()))
        );
        assert_eq!(register(&mut state, "s", V2_DEFAULT), Ok(2));
        assert_eq!(state.version("s", VersionSpec::Latest).unwrap().version, 2);
        assert_eq!(state.lookup("s", V1).unwrap().version, 1);
    }

    #[test]
    fn lookups_tell_a_missing_subject_from_a_missing_schema() {
        let mut state = RegistryState::default();
        assert_eq!(state.lookup("s", V1), Err(RegistryError::SubjectNotFound("s".into())));
        register(&mut state, "s", V1).unwrap();
        assert_eq!(state.lookup("s", V2_DEFAULT), Err(RegistryError::SchemaNotFound));
        assert_eq!(
            state.version("s", VersionSpec::Number(9)),
            Err(RegistryError::VersionNotFound { subject: "s".into(), version: 9 })
        );
        assert_eq!(state.schema_by_id(5), Err(RegistryError::SchemaNotFound));
        assert_eq!(state.schema_by_id(1), Ok(V1));
        assert_eq!(state.versions("nope"), Err(RegistryError::SubjectNotFound("nope".into())));
    }

    #[test]
    fn compatibility_checks_on_a_missing_subject() {
        let state = RegistryState::default();
        assert_eq!(state.check_compatibility("s", V1, None), Ok(Ok(())));
        assert_eq!(
            state.check_compatibility("s", V1, Some(VersionSpec::Latest)),
            Err(RegistryError::SubjectNotFound("s".into()))
        );
    }

    #[test]
    fn invalid_schemas_are_refused() {
        let state = RegistryState::default();
        assert!(matches!(state.prepare_register("s", "{"), Err(RegistryError::InvalidSchema(_))));
        assert!(matches!(
            state.prepare_register("s", r#"{"type":"nope"}"#),
            Err(RegistryError::InvalidSchema(_))
        ));
        assert!(matches!(state.prepare_register("s", ""), Err(RegistryError::InvalidSchema(_))));
    }

    #[test]
    fn versions_parse_like_confluent() {
        assert_eq!(VersionSpec::parse("latest"), Ok(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("-1"), Ok(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("3"), Ok(VersionSpec::Number(3)));
        for bad in ["0", "-2", "x", "2147483648"] {
            assert!(
                matches!(VersionSpec::parse(bad), Err(RegistryError::InvalidVersion(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn levels_default_to_backward_and_subjects_fall_back_only_when_asked() {
        let mut state = RegistryState::default();
        assert_eq!(state.compatibility_level(None, false), Ok(CompatibilityLevel::Backward));
        assert_eq!(
            state.compatibility_level(Some("s"), false),
            Err(RegistryError::SubjectLevelNotConfigured("s".into()))
        );
        set_level(&mut state, None, CompatibilityLevel::Full);
        assert_eq!(state.compatibility_level(Some("s"), true), Ok(CompatibilityLevel::Full));
        set_level(&mut state, Some("s"), CompatibilityLevel::None);
        assert_eq!(state.compatibility_level(Some("s"), false), Ok(CompatibilityLevel::None));
        assert_eq!(state.effective_level("other"), CompatibilityLevel::Full);
    }

    #[test]
    fn replaying_the_records_rebuilds_the_same_answers() {
        let mut live = RegistryState::default();
        let mut log = Vec::new();
        for (subject, schema) in [("a", V1), ("a", V2_DEFAULT), ("b", V2_DEFAULT)] {
            if let Registration::New { record, .. } =
                live.prepare_register(subject, schema).unwrap()
            {
                live.apply(&record);
                log.push(record);
            }
        }
        let record = live.prepare_set_level(Some("b"), CompatibilityLevel::Forward);
        live.apply(&record);
        log.push(record);

        let mut replayed = RegistryState::default();
        for record in log.iter().chain(log.iter()) {
            replayed.apply(record);
        }
        assert_eq!(replayed.subjects(), live.subjects());
        for subject in live.subjects() {
            assert_eq!(replayed.versions(&subject), live.versions(&subject));
            assert_eq!(
                replayed.version(&subject, VersionSpec::Latest),
                live.version(&subject, VersionSpec::Latest)
            );
        }
        assert_eq!(replayed.compatibility_level(Some("b"), false), Ok(CompatibilityLevel::Forward));
        assert_eq!(replayed.version("b", VersionSpec::Latest).unwrap().id, 2);
    }

    #[test]
    fn conflicting_records_are_skipped_and_the_first_one_wins() {
        let mut state = RegistryState::default();
        let first = RegistryRecord::SchemaRegistered {
            subject: "s".into(),
            version: 1,
            id: 1,
            schema: V1.into(),
        };
        let other_schema_same_id = RegistryRecord::SchemaRegistered {
            subject: "t".into(),
            version: 1,
            id: 1,
            schema: V2_DEFAULT.into(),
        };
        let other_id_same_version = RegistryRecord::SchemaRegistered {
            subject: "s".into(),
            version: 1,
            id: 2,
            schema: V2_DEFAULT.into(),
        };
        assert_eq!(state.apply(&first), Applied::Changed);
        assert!(matches!(state.apply(&other_schema_same_id), Applied::Conflict(_)));
        assert!(matches!(state.apply(&other_id_same_version), Applied::Conflict(_)));
        assert_eq!(state.subjects(), vec!["s".to_string()]);
        assert_eq!(state.schema_by_id(1), Ok(V1));
        assert_eq!(state.schema_by_id(2), Err(RegistryError::SchemaNotFound));
    }
}
