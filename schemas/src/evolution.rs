//! Reading records written with any registered version of their schema.
//!
//! A record names its writer's schema by registry id (Confluent wire format). It is decoded with
//! that schema, then brought to the current (reader) schema of its type: first by the
//! [`Upcaster`]s, for changes Avro resolution cannot express, then by resolution, which fills
//! every field the writer did not know with the reader's default. Code therefore only ever sees
//! records shaped like the current `.avsc`, whatever version wrote them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use platform::codec::CodecError;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_id};

use crate::events::{EventSchema, RecordFields};
use crate::transcode::FieldReader;

/// The Confluent wire format's magic byte.
const MAGIC_BYTE: u8 = 0;

/// Splits a Confluent wire-format value into its schema id and its Avro datum.
pub fn wire_header(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match bytes {
        [MAGIC_BYTE, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [] => Err(CodecError::Undecodable("the record is empty".into())),
        _ => Err(CodecError::Undecodable("the record is not in the Confluent wire format".into())),
    }
}

/// A schema as some writer registered it.
pub struct WriterSchema {
    /// Its registry id.
    pub id: u32,
    /// Full name of its record (`ticketing.tickets.TicketCreated`).
    pub full_name: String,
    /// The parsed schema.
    pub schema: &'static Schema,
    /// The schema text as the registry holds it.
    pub text: String,
    /// Reads datums written with it; built once, since building one resolves the schema's
    /// names (which, per record, cost replays a third of their speed).
    datum_reader: GenericDatumReader<'static>,
    /// Reads its datums' fields by a compiled plan, where the schema's types allow.
    field_reader: Option<FieldReader>,
}

impl std::fmt::Debug for WriterSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterSchema").field("id", &self.id).field("full_name", &self.full_name).finish_non_exhaustive()
    }
}

/// A record decoded with its writer's schema, before any evolution.
#[derive(Debug, Clone)]
pub struct WriterRecord {
    /// The schema it was written with.
    pub schema: Arc<WriterSchema>,
    /// Its fields, as written.
    pub fields: Vec<(String, Value)>,
}

/// The writers' schemas, fetched from the registry by id once and kept (an id never changes
/// meaning).
pub struct WriterSchemas {
    settings: SrSettings,
    known: RwLock<HashMap<u32, Arc<WriterSchema>>>,
}

impl WriterSchemas {
    /// Fetches schemas from the registry in `settings`.
    pub fn new(settings: SrSettings) -> Self {
        Self { settings, known: RwLock::new(HashMap::new()) }
    }

    /// The schema registered under `id`.
    pub async fn get(&self, id: u32) -> Result<Arc<WriterSchema>, CodecError> {
        if let Some(schema) = self.known.read().expect("schema cache lock").get(&id) {
            return Ok(schema.clone());
        }
        let registered = get_schema_by_id(id, &self.settings).await.map_err(|e| {
            if e.retriable {
                CodecError::RegistryUnavailable(e.to_string())
            } else {
                CodecError::Undecodable(format!("schema id {id}: {e}"))
            }
        })?;
        self.remember(id, registered.schema)
    }

    /// Keeps `text` as the schema registered under `id`, as a fetch from the registry does
    /// (for readers that know the registry's content already, such as the fuzz targets).
    pub fn remember(&self, id: u32, text: String) -> Result<Arc<WriterSchema>, CodecError> {
        if let Some(schema) = self.known.read().expect("schema cache lock").get(&id) {
            return Ok(schema.clone());
        }
        let schema = Schema::parse_str(&text)
            .map_err(|e| CodecError::Undecodable(format!("schema id {id} does not parse: {e}")))?;
        let Schema::Record(record) = &schema else {
            return Err(CodecError::Undecodable(format!("schema id {id} is not a record")));
        };
        let full_name = record.name.fullname(None);
        // The datum reader borrows its schema for the process's life: a registry id never
        // changes meaning and a process meets a handful of them, so the schema is leaked once
        // per id rather than its names resolved once per record.
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let datum_reader = GenericDatumReader::builder(schema)
            .build()
            .map_err(|e| CodecError::Undecodable(format!("schema id {id} cannot be read with: {e}")))?;
        let field_reader = FieldReader::compile(schema);
        let writer = Arc::new(WriterSchema { id, full_name, schema, text, datum_reader, field_reader });
        let mut known = self.known.write().expect("schema cache lock");
        Ok(known.entry(id).or_insert(writer).clone())
    }

    /// Decodes a wire-format value with its writer's schema.
    pub async fn decode(&self, bytes: &[u8]) -> Result<WriterRecord, CodecError> {
        let (id, mut datum) = wire_header(bytes)?;
        let schema = self.get(id).await?;
        let value = schema
            .datum_reader
            .read_value(&mut datum)
            .map_err(|e| CodecError::Undecodable(format!("not a {} record: {e}", schema.full_name)))?;
        let Value::Record(fields) = value else {
            return Err(CodecError::Undecodable("the value is not a record".into()));
        };
        Ok(WriterRecord { schema, fields })
    }
}

/// A change between schema versions that resolution cannot express, applied to the writer's
/// fields of every record of `record` before resolution.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    /// Full name of the record it applies to.
    pub record: &'static str,
    /// What it does, for the docs and error messages.
    pub change: &'static str,
    /// Rewrites a record's fields; records it does not concern are left as they are.
    pub upcast: fn(&mut Vec<(String, Value)>),
}

/// Renames field `from` to `to`, for writers that predate the rename. Resolution would match
/// them through the reader field's `aliases`, but apache-avro's resolution ignores aliases.
pub fn rename_field(fields: &mut [(String, Value)], from: &str, to: &str) {
    if fields.iter().any(|(name, _)| name == to) {
        return;
    }
    if let Some((name, _)) = fields.iter_mut().find(|(name, _)| name == from) {
        *name = to.to_string();
    }
}

/// The current schemas of one topic's records, and the upcasters that lead to them.
pub struct ReaderSchemas {
    by_name: HashMap<&'static str, Schema>,
    upcasters: &'static [Upcaster],
    /// Writer schema ids known to be, or not to be, the current schema of their type.
    current: RwLock<HashMap<u32, bool>>,
}

impl ReaderSchemas {
    /// Parses the current schemas; they are checked in, so one that does not parse is a bug.
    pub fn new(schemas: &'static [EventSchema], upcasters: &'static [Upcaster]) -> Self {
        let by_name = schemas
            .iter()
            .map(|s| {
                let schema = Schema::parse_str(s.avsc)
                    .unwrap_or_else(|e| panic!("the checked-in schema {} does not parse: {e}", s.full_name));
                (s.full_name, schema)
            })
            .collect();
        Self { by_name, upcasters, current: RwLock::new(HashMap::new()) }
    }

    /// Whether `writer` is the current schema of its type (decided once per schema id).
    fn is_current(&self, writer: &WriterSchema, reader: &Schema) -> bool {
        if let Some(current) = self.current.read().expect("current schemas lock").get(&writer.id) {
            return *current;
        }
        let current = writer.schema.canonical_form() == reader.canonical_form();
        self.current.write().expect("current schemas lock").insert(writer.id, current);
        current
    }

    /// The current schema of `full_name`, if the topic still has that record type.
    pub fn schema(&self, full_name: &str) -> Option<&Schema> {
        self.by_name.get(full_name)
    }

    /// Brings a writer's record to the current schema of its type.
    pub fn read(&self, record: WriterRecord) -> Result<Vec<(String, Value)>, CodecError> {
        let name = record.schema.full_name.as_str();
        let reader = self
            .by_name
            .get(name)
            .ok_or_else(|| CodecError::Undecodable(format!("unknown event type {name}")))?;
        if self.is_current(&record.schema, reader) {
            // Most records are written with today's schema: nothing to bring them to.
            return Ok(record.fields);
        }
        let mut fields = record.fields;
        for upcaster in self.upcasters.iter().filter(|u| u.record == name) {
            (upcaster.upcast)(&mut fields);
        }
        match Value::Record(fields).resolve(reader) {
            Ok(Value::Record(fields)) => Ok(fields),
            Ok(_) => Err(CodecError::Undecodable(format!("{name} did not resolve to a record"))),
            Err(e) => Err(CodecError::Undecodable(format!(
                "a {name} written with schema id {} cannot be read with the current schema: {e}",
                record.schema.id
            ))),
        }
    }
}

/// Reads one topic's records as the current code sees them, whichever version wrote them.
pub struct RecordReader {
    writers: WriterSchemas,
    readers: ReaderSchemas,
}

/// A record brought to the current schema of its type.
#[derive(Debug, Clone)]
pub struct CurrentRecord {
    /// The schema it was written with.
    pub writer: Arc<WriterSchema>,
    /// Its fields, shaped like the current schema.
    pub fields: Vec<(String, Value)>,
}

impl RecordReader {
    /// Reads records with the writers' schemas from the registry in `settings`.
    pub fn new(settings: SrSettings, schemas: &'static [EventSchema], upcasters: &'static [Upcaster]) -> Self {
        Self { writers: WriterSchemas::new(settings), readers: ReaderSchemas::new(schemas, upcasters) }
    }

    /// The writers' schemas.
    pub fn writers(&self) -> &WriterSchemas {
        &self.writers
    }

    /// Whether records of `writer` are read as written: it is the current schema of its type.
    pub fn is_current(&self, writer: &WriterSchema) -> bool {
        self.readers.schema(&writer.full_name).is_some_and(|reader| self.readers.is_current(writer, reader))
    }

    /// Decodes a wire-format value and brings it to the current schema.
    pub async fn read(&self, bytes: &[u8]) -> Result<CurrentRecord, CodecError> {
        let written = self.writers.decode(bytes).await?;
        let writer = written.schema.clone();
        Ok(CurrentRecord { writer, fields: self.readers.read(written)? })
    }

    /// As [`Self::read`], for code that looks the fields up by name: a record written with the
    /// current schema of its type is read by the schema's compiled [`FieldReader`]; any other,
    /// and any datum the plan refuses, the general way.
    pub async fn read_fields(&self, bytes: &[u8]) -> Result<(Arc<WriterSchema>, RecordFields), CodecError> {
        let (id, datum) = wire_header(bytes)?;
        let writer = self.writers.get(id).await?;
        if let Some(reader) = &writer.field_reader
            && self.is_current(&writer)
            && let Ok(fields) = reader.read(datum)
        {
            return Ok((writer, fields.into()));
        }
        let record = self.read(bytes).await?;
        Ok((record.writer, record.fields.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_header_names_the_schema() {
        assert_eq!(wire_header(&[0, 0, 0, 1, 2, 9, 9]).unwrap(), (258, &[9u8, 9][..]));
        assert!(wire_header(&[1, 0, 0, 0, 1]).is_err());
        assert!(wire_header(&[0, 0]).is_err());
        assert!(wire_header(&[]).is_err());
    }

    #[test]
    fn a_rename_leaves_records_that_already_use_the_new_name() {
        let mut old = vec![("price_cents".to_string(), Value::Long(5))];
        rename_field(&mut old, "price_cents", "price_minor");
        assert_eq!(old, vec![("price_minor".to_string(), Value::Long(5))]);
        let mut new = vec![("price_minor".to_string(), Value::Long(7)), ("price_cents".to_string(), Value::Long(1))];
        rename_field(&mut new, "price_cents", "price_minor");
        assert_eq!(new[0], ("price_minor".to_string(), Value::Long(7)));
    }
}
