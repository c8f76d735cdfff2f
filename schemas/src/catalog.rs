//! The event topics, as tools that read every topic (exports, audits) need to know them: their
//! schemas, the upcasters between versions, and which fields hold personal data.

use apache_avro::types::Value;

use crate::events::{AvroEvent, EventSchema, PersonalField};
use crate::evolution::Upcaster;
use crate::orders::OrderEvent;
use crate::payments::PaymentEvent;
use crate::tickets::TicketEvent;
use crate::users::UserEvent;

/// What personal data is replaced with in redacted output.
pub const REDACTED: &str = "[redacted]";

/// One event topic.
#[derive(Debug, Clone, Copy)]
pub struct EventTopic {
    /// Short name (`tickets`); the deployment prefixes its namespace.
    pub name: &'static str,
    /// The current schema of each record type.
    pub schemas: &'static [EventSchema],
    /// The changes between versions that resolution cannot express.
    pub upcasters: &'static [Upcaster],
    /// The fields holding personal data.
    pub personal_fields: &'static [PersonalField],
    /// Whether the record key is personal data.
    pub key_is_personal: bool,
}

impl EventTopic {
    /// The topic of the events `E`.
    pub fn of<E: AvroEvent>() -> Self {
        Self {
            name: E::TOPIC,
            schemas: E::schemas(),
            upcasters: E::upcasters(),
            personal_fields: E::personal_fields(),
            key_is_personal: E::KEY_IS_PERSONAL,
        }
    }

    /// The topic with this short name.
    pub fn named(name: &str) -> Option<Self> {
        event_topics().into_iter().find(|t| t.name == name)
    }

    /// Whether the topic has a record type of this short name (`TicketCreated`).
    pub fn has_event_type(&self, event_type: &str) -> bool {
        self.schemas.iter().any(|s| s.full_name.rsplit('.').next() == Some(event_type))
    }

    /// Replaces the personal data among a `record`'s fields with [`REDACTED`], keeping each
    /// field's type, so redacted records still match their schema.
    pub fn redact(&self, record: &str, fields: &mut [(String, Value)]) {
        for personal in self.personal_fields.iter().filter(|p| p.record == record) {
            if let Some((_, value)) = fields.iter_mut().find(|(name, _)| name == personal.field) {
                redact_value(value);
            }
        }
    }
}

/// Redacts one value as [`EventTopic::redact`] does a personal field.
pub(crate) fn redact_value(value: &mut Value) {
    match value {
        Value::String(text) => *text = REDACTED.to_string(),
        Value::Bytes(bytes) => bytes.clear(),
        Value::Union(_, inner) => redact_value(inner),
        _ => {}
    }
}

/// An Avro value as JSON: timestamps as RFC 3339 text with milliseconds, unions as their
/// branch's value, bytes as base64.
pub fn json_value(value: &Value) -> serde_json::Value {
    serde_json::to_value(AvroJson(value)).unwrap_or(serde_json::Value::Null)
}

/// An Avro value serialized as [`json_value`] shows it, written out directly (without building
/// a `serde_json::Value` first, which cost exports half their speed); records keep their
/// fields' order.
pub struct AvroJson<'a>(pub &'a Value);

impl serde::Serialize for AvroJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => serializer.serialize_i32(*n),
            Value::Long(n) | Value::TimeMicros(n) | Value::TimestampMicros(n) | Value::LocalTimestampMicros(n) => {
                serializer.serialize_i64(*n)
            }
            Value::TimestampMillis(ms) | Value::LocalTimestampMillis(ms) => serializer.serialize_str(&rfc3339_millis(*ms)),
            Value::Float(x) if x.is_finite() => serializer.serialize_f64(f64::from(*x)),
            Value::Double(x) if x.is_finite() => serializer.serialize_f64(*x),
            Value::Float(_) | Value::Double(_) => serializer.serialize_unit(),
            Value::String(s) | Value::Enum(_, s) => serializer.serialize_str(s),
            Value::Uuid(u) => serializer.collect_str(u),
            Value::Bytes(b) | Value::Fixed(_, b) => serializer.serialize_str(&base64_encode(b)),
            Value::Union(_, inner) => AvroJson(inner).serialize(serializer),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&AvroJson(item))?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, &AvroJson(v))?;
                }
                map.end()
            }
            Value::Record(fields) => AvroFields(fields.iter()).serialize(serializer),
            other => serializer.collect_str(&format_args!("{other:?}")),
        }
    }
}

/// Some of a record's fields as one JSON object, in their order.
pub struct AvroFields<I>(pub I);

impl<'a, I> serde::Serialize for AvroFields<I>
where
    I: Iterator<Item = &'a (String, Value)> + Clone,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.0.clone() {
            map.serialize_entry(k, &AvroJson(v))?;
        }
        map.end()
    }
}

/// Milliseconds since the epoch as RFC 3339 text (`2026-12-01T10:00:00.000Z`).
pub fn rfc3339_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Every event topic, in the order their aggregates come to be.
pub fn event_topics() -> [EventTopic; 4] {
    [
        EventTopic::of::<UserEvent>(),
        EventTopic::of::<TicketEvent>(),
        EventTopic::of::<OrderEvent>(),
        EventTopic::of::<PaymentEvent>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_fields_are_redacted_and_keep_their_type() {
        let users = EventTopic::named("users").unwrap();
        let mut fields = vec![
            ("email".to_string(), Value::String("me@example.com".into())),
            ("user_id".to_string(), Value::String("u-1".into())),
        ];
        users.redact("ticketing.users.UserSignedUp", &mut fields);
        assert_eq!(fields[0].1, Value::String(REDACTED.into()));
        assert_eq!(fields[1].1, Value::String("u-1".into()));
        assert!(users.key_is_personal && users.has_event_type("UserSignedUp"));
        assert!(!EventTopic::named("tickets").unwrap().key_is_personal);
    }
}
