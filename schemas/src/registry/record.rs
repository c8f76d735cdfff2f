//! The records a registry writes to its log, and their JSON key/value form.
//!
//! The shapes follow Confluent's own `_schemas` topic (`{"keytype":"SCHEMA","subject":..,
//! "version":..,"magic":1}` → `{"subject","version","id","schema","deleted"}`, and
//! `{"keytype":"CONFIG","subject":..,"magic":0}` → `{"compatibilityLevel":..}`), so the topic is
//! readable by the usual tooling and compaction keeps exactly what a replay needs: one record
//! per subject version and the latest level per scope.

use serde::{Deserialize, Serialize};

use crate::compatibility::CompatibilityLevel;

/// One state change of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryRecord {
    /// `schema` got the global `id` and became `version` of `subject`.
    SchemaRegistered {
        /// Subject name.
        subject: String,
        /// Version within the subject, from 1.
        version: u32,
        /// Global schema id.
        id: u32,
        /// The schema text as it was first registered.
        schema: String,
    },
    /// A compatibility level was set, globally (`subject: None`) or for one subject.
    CompatibilitySet {
        /// The subject, or `None` for the global level.
        subject: Option<String>,
        /// The new level.
        level: CompatibilityLevel,
    },
}

/// A log record that is not a registry record this version understands.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The key is not a JSON registry key.
    #[error("Failed to decode a registry record key: {0}")]
    Key(#[source] serde_json::Error),
    /// The value does not match its key type.
    #[error("Failed to decode a registry record value: {0}")]
    Value(#[source] serde_json::Error),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "SCREAMING_SNAKE_CASE")]
enum RecordKey {
    Schema {
        subject: String,
        version: u32,
        magic: u8,
    },
    Config {
        subject: Option<String>,
        magic: u8,
    },
    // NOOP and the delete-subject markers of other registries: nothing to apply.
    #[serde(other)]
    Other,
}

#[derive(Serialize, Deserialize)]
struct SchemaValue {
    subject: String,
    version: u32,
    id: u32,
    schema: String,
    #[serde(default)]
    deleted: bool,
    #[serde(rename = "schemaType", default, skip_serializing_if = "Option::is_none")]
    schema_type: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: CompatibilityLevel,
}

impl RegistryRecord {
    /// The JSON key and value to append to the log.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let (key, value) = match self {
            Self::SchemaRegistered { subject, version, id, schema } => (
                serde_json::to_vec(&RecordKey::Schema {
                    subject: subject.clone(),
                    version: *version,
                    magic: 1,
                }),
                serde_json::to_vec(&SchemaValue {
                    subject: subject.clone(),
                    version: *version,
                    id: *id,
                    schema: schema.clone(),
                    deleted: false,
                    schema_type: None,
                }),
            ),
            Self::CompatibilitySet { subject, level } => (
                serde_json::to_vec(&RecordKey::Config { subject: subject.clone(), magic: 0 }),
                serde_json::to_vec(&ConfigValue { compatibility_level: *level }),
            ),
        };
        // Serializing plain structs of strings and numbers to a Vec cannot fail.
        (key.expect("registry keys serialize"), value.expect("registry values serialize"))
    }

    /// Decodes a log record; `Ok(None)` for records with nothing to apply (other key types,
    /// tombstones, soft-deleted versions and non-Avro schemas, which this registry does not
    /// manage).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Self>, RecordError> {
        let key: RecordKey = serde_json::from_slice(key).map_err(RecordError::Key)?;
        let Some(value) = value else { return Ok(None) };
        match key {
            RecordKey::Schema { .. } => {
                let value: SchemaValue =
                    serde_json::from_slice(value).map_err(RecordError::Value)?;
                let avro =
                    value.schema_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("AVRO"));
                if value.deleted || !avro {
                    return Ok(None);
                }
                Ok(Some(Self::SchemaRegistered {
                    subject: value.subject,
                    version: value.version,
                    id: value.id,
                    schema: value.schema,
                }))
            }
            RecordKey::Config { subject, .. } => {
                let value: ConfigValue =
                    serde_json::from_slice(value).map_err(RecordError::Value)?;
                Ok(Some(Self::CompatibilitySet { subject, level: value.compatibility_level }))
            }
            RecordKey::Other => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_their_json_form() {
        let records = [
            RegistryRecord::SchemaRegistered {
                subject: "t-R".into(),
                version: 2,
                id: 7,
                schema: r#"{"type":"string"}"#.into(),
            },
            RegistryRecord::CompatibilitySet { subject: None, level: CompatibilityLevel::Full },
            RegistryRecord::CompatibilitySet {
                subject: Some("t-R".into()),
                level: CompatibilityLevel::None,
            },
        ];
        for record in records {
            let (key, value) = record.encode();
            assert_eq!(RegistryRecord::decode(&key, Some(&value)).unwrap(), Some(record));
        }
    }

    #[test]
    fn keys_have_confluents_shape() {
        let record = RegistryRecord::SchemaRegistered {
            subject: "s".into(),
            version: 1,
            id: 1,
            schema: "\"string\"".into(),
        };
        let (key, _) = record.encode();
        assert_eq!(
            String::from_utf8(key).unwrap(),
            r#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#
        );
    }

    #[test]
    fn other_keys_tombstones_and_deleted_versions_apply_nothing() {
        assert_eq!(
            RegistryRecord::decode(br#"{"keytype":"NOOP","magic":0}"#, Some(b"{}")).unwrap(),
            None
        );
        let key = br#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#;
        assert_eq!(RegistryRecord::decode(key, None).unwrap(), None);
        let deleted = br#"{"subject":"s","version":1,"id":1,"schema":"\"string\"","deleted":true}"#;
        assert_eq!(RegistryRecord::decode(key, Some(deleted)).unwrap(), None);
        assert!(RegistryRecord::decode(b"not json", Some(b"{}")).is_err());
    }
}
