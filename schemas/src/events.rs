//! Typed events and their mapping to and from Avro records.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};

use apache_avro::types::Value;
use platform::aggregate::EventMetadata;
use platform::codec::CodecError;

use crate::evolution::Upcaster;

/// One event type's Avro schema.
#[derive(Debug, Clone, Copy)]
pub struct EventSchema {
    /// Full record name (`ticketing.tickets.TicketCreated`), also the subject suffix under
    /// `TopicRecordNameStrategy`.
    pub full_name: &'static str,
    /// The `.avsc` text.
    pub avsc: &'static str,
}

/// A field of a record type that holds personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalField {
    /// Full name of the record type.
    pub record: &'static str,
    /// The field.
    pub field: &'static str,
}

/// The events of one topic, as Avro records.
pub trait AvroEvent: Sized + Clone + Send + Sync + 'static {
    /// Short name of the topic (`tickets`); the deployment prefixes its namespace.
    const TOPIC: &'static str;

    /// Schemas of every event type of the topic.
    fn schemas() -> &'static [EventSchema];

    /// The changes between the topic's schema versions that Avro resolution cannot express.
    fn upcasters() -> &'static [Upcaster] {
        &[]
    }

    /// The fields that hold personal data: exports redact them unless asked not to.
    fn personal_fields() -> &'static [PersonalField] {
        &[]
    }

    /// Whether the record key is personal data (the users topic is keyed by email).
    const KEY_IS_PERSONAL: bool = false;

    /// The schema of this event.
    fn schema(&self) -> &'static EventSchema;

    /// The `event_type` header: the record's short name.
    fn event_type(&self) -> &'static str {
        let full = self.schema().full_name;
        full.rsplit('.').next().unwrap_or(full)
    }

    /// The event's own fields (the envelope is added by the codec).
    fn payload_fields(&self) -> Vec<(&'static str, Value)>;

    /// Rebuilds the event from a decoded record named `full_name`.
    fn from_record(full_name: &str, fields: &RecordFields) -> Result<Self, CodecError>;
}

/// The fields of a decoded Avro record, looked up by name. Each field is read once: its value
/// is moved out rather than copied (a second read of one field is an error).
pub struct RecordFields {
    /// Named by the schema (compiled reading) or as apache-avro names them (the general way).
    fields: RefCell<Vec<(Cow<'static, str>, Value)>>,
    /// Where the next lookup starts: one past the last field found, since events read their
    /// fields mostly in the schema's order.
    next: Cell<usize>,
}

/// What a field read already holds (no field of a real schema has this size).
const READ: Value = Value::Fixed(usize::MAX, Vec::new());

impl From<Vec<(Cow<'static, str>, Value)>> for RecordFields {
    fn from(fields: Vec<(Cow<'static, str>, Value)>) -> Self {
        Self { fields: RefCell::new(fields), next: Cell::new(0) }
    }
}

impl From<Vec<(String, Value)>> for RecordFields {
    fn from(fields: Vec<(String, Value)>) -> Self {
        fields.into_iter().map(|(name, value)| (Cow::Owned(name), value)).collect::<Vec<_>>().into()
    }
}

impl RecordFields {
    /// The value of field `name`, moved out, with any union around it taken off.
    fn take(&self, name: &str) -> Result<Value, CodecError> {
        let mut fields = self.fields.borrow_mut();
        let start = self.next.get().min(fields.len());
        let (head, tail) = fields.split_at(start);
        let found = tail
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| start + i)
            .or_else(|| head.iter().position(|(n, _)| n == name))
            .ok_or_else(|| CodecError::Undecodable(format!("field {name} is missing")))?;
        self.next.set(found + 1);
        match std::mem::replace(&mut fields[found].1, READ) {
            Value::Fixed(usize::MAX, _) => Err(CodecError::Undecodable(format!("field {name} is read twice"))),
            Value::Union(_, inner) => Ok(*inner),
            value => Ok(value),
        }
    }

    /// A string (or uuid) field.
    pub fn string(&self, name: &str) -> Result<String, CodecError> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            Value::Uuid(u) => Ok(u.to_string()),
            other => Err(CodecError::Undecodable(format!("field {name} is not a string: {other:?}"))),
        }
    }

    /// An optional string field (a `["null","string"]` union).
    pub fn optional_string(&self, name: &str) -> Result<Option<String>, CodecError> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            Value::Uuid(u) => Ok(Some(u.to_string())),
            other => Err(CodecError::Undecodable(format!("field {name} is not a string: {other:?}"))),
        }
    }

    /// A bytes field.
    pub fn bytes(&self, name: &str) -> Result<Vec<u8>, CodecError> {
        match self.take(name)? {
            Value::Bytes(b) | Value::Fixed(_, b) => Ok(b),
            other => Err(CodecError::Undecodable(format!("field {name} is not bytes: {other:?}"))),
        }
    }

    /// An int field.
    pub fn int(&self, name: &str) -> Result<i32, CodecError> {
        match self.take(name)? {
            Value::Int(v) => Ok(v),
            other => Err(CodecError::Undecodable(format!("field {name} is not an int: {other:?}"))),
        }
    }

    /// A long (or timestamp) field.
    pub fn long(&self, name: &str) -> Result<i64, CodecError> {
        match self.take(name)? {
            Value::Long(v) | Value::TimestampMillis(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(CodecError::Undecodable(format!("field {name} is not a long: {other:?}"))),
        }
    }
}

/// The names of the envelope's fields, which every event record starts with.
pub const ENVELOPE_FIELDS: [&str; 9] = [
    "event_id",
    "aggregate_id",
    "aggregate_version",
    "command_id",
    "command_event_index",
    "command_event_count",
    "occurred_at",
    "correlation_id",
    "causation_id",
];

/// The envelope as Avro fields.
pub fn metadata_fields(metadata: &EventMetadata) -> Vec<(&'static str, Value)> {
    vec![
        ("event_id", Value::Uuid(metadata.event_id)),
        ("aggregate_id", Value::String(metadata.aggregate_id.clone())),
        ("aggregate_version", Value::Long(metadata.aggregate_version)),
        ("command_id", Value::String(metadata.command_id.clone())),
        ("command_event_index", Value::Int(metadata.command_event_index)),
        ("command_event_count", Value::Int(metadata.command_event_count)),
        ("occurred_at", Value::TimestampMillis(metadata.occurred_at)),
        ("correlation_id", Value::String(metadata.correlation_id.clone())),
        (
            "causation_id",
            match &metadata.causation_id {
                Some(id) => Value::Union(1, Box::new(Value::String(id.clone()))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
    ]
}

/// The envelope read back from Avro fields.
pub fn metadata_from(fields: &RecordFields) -> Result<EventMetadata, CodecError> {
    let event_id = fields.string("event_id")?;
    Ok(EventMetadata {
        event_id: event_id
            .parse()
            .map_err(|_| CodecError::Undecodable(format!("event_id {event_id:?} is not a UUID")))?,
        aggregate_id: fields.string("aggregate_id")?,
        aggregate_version: fields.long("aggregate_version")?,
        command_id: fields.string("command_id")?,
        command_event_index: fields.int("command_event_index")?,
        command_event_count: fields.int("command_event_count")?,
        occurred_at: fields.long("occurred_at")?,
        correlation_id: fields.string("correlation_id")?,
        causation_id: fields.optional_string("causation_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_in_any_order() {
        let fields = RecordFields::from(vec![
            ("a".to_string(), Value::Long(1)),
            ("b".to_string(), Value::Int(2)),
            ("c".to_string(), Value::String("three".into())),
        ]);
        assert_eq!(fields.string("c").unwrap(), "three");
        assert_eq!(fields.long("a").unwrap(), 1);
        assert!(fields.long("d").is_err());
        assert_eq!(fields.int("b").unwrap(), 2);
        assert!(RecordFields::from(Vec::<(String, Value)>::new()).long("a").is_err());
    }

    #[test]
    fn a_field_is_read_once() {
        let fields = RecordFields::from(vec![
            ("a".to_string(), Value::Union(1, Box::new(Value::String("x".into())))),
            ("b".to_string(), Value::Union(0, Box::new(Value::Null))),
        ]);
        assert_eq!(fields.optional_string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(fields.optional_string("b").unwrap(), None);
        let again = fields.optional_string("b").unwrap_err().to_string();
        assert!(again.contains("field b is read twice"), "{again}");
        assert!(fields.string("a").is_err());
    }

    #[test]
    fn the_envelope_field_names_are_those_written() {
        let metadata = EventMetadata {
            event_id: uuid::Uuid::nil(),
            aggregate_id: "a".into(),
            aggregate_version: 1,
            command_id: "c".into(),
            command_event_index: 0,
            command_event_count: 1,
            occurred_at: 0,
            correlation_id: "r".into(),
            causation_id: None,
        };
        let names: Vec<&str> = metadata_fields(&metadata).iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ENVELOPE_FIELDS);
    }
}
