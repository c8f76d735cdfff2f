//! Confluent wire-format codec (magic byte + schema id + Avro) through
//! `schema_registry_converter`, with subjects named by `TopicRecordNameStrategy`.

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use platform::aggregate::Envelope;
use platform::codec::{CodecError, EventCodec};
use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};

use crate::events::{AvroEvent, metadata_fields, metadata_from};
use crate::evolution::RecordReader;

/// Settings of the schema registry client, from a comma-separated list of URLs.
pub fn registry_settings(urls: &str) -> Result<SrSettings, CodecError> {
    let mut urls = urls.split(',').map(str::trim).filter(|u| !u.is_empty());
    let first = urls
        .next()
        .ok_or_else(|| CodecError::RegistryUnavailable("no schema registry URL configured".into()))?;
    let mut builder = SrSettings::new_builder(first.trim_end_matches('/').to_string());
    for url in urls {
        builder.add_url(url.trim_end_matches('/').to_string());
    }
    builder
        .no_proxy()
        .set_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| CodecError::RegistryUnavailable(e.to_string()))
}

/// Encodes and decodes the events of one topic in the Confluent wire format. Records written
/// with an earlier version of their schema are read through [`crate::evolution`].
pub struct AvroCodec<E> {
    topic: String,
    encoder: AvroEncoder,
    reader: RecordReader,
    _events: PhantomData<fn() -> E>,
}

impl<E: AvroEvent> AvroCodec<E> {
    /// A codec for `topic` (full name) talking to the registry in `settings`.
    pub fn new(topic: String, settings: SrSettings) -> Self {
        limit_allocations();
        Self {
            topic,
            encoder: AvroEncoder::new(settings.clone()),
            reader: RecordReader::new(settings, E::schemas(), E::upcasters()),
            _events: PhantomData,
        }
    }

    /// Schemas a reader knows by id without asking the registry (see
    /// [`crate::evolution::WriterSchemas::remember`]).
    pub fn writer_schemas(&self) -> &crate::evolution::WriterSchemas {
        self.reader.writers()
    }

    /// Registers every schema of the topic (so readers never meet an unknown id) and fails when
    /// the registry refuses one, e.g. because it is not compatible with the registered version.
    pub async fn register_all(&self) -> Result<(), CodecError> {
        for schema in E::schemas() {
            let strategy = self.strategy(schema.full_name, schema.avsc);
            self.encoder
                .get_schema_and_id(&strategy.get_subject().map_err(classify)?, strategy)
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    fn strategy(&self, full_name: &str, avsc: &str) -> SubjectNameStrategy {
        SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            self.topic.clone(),
            SuppliedSchema::new(Some(full_name.to_string()), SchemaType::Avro, avsc.to_string()),
        )
    }
}

fn classify(error: SRCError) -> CodecError {
    if error.retriable {
        CodecError::RegistryUnavailable(error.to_string())
    } else {
        CodecError::Unencodable(error.to_string())
    }
}

#[async_trait]
impl<E: AvroEvent> EventCodec<E> for AvroCodec<E> {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn event_type(&self, event: &E) -> &'static str {
        event.event_type()
    }

    async fn encode(&self, envelope: &Envelope<E>) -> Result<Vec<u8>, CodecError> {
        let schema = envelope.event.schema();
        let mut fields = metadata_fields(&envelope.metadata);
        fields.extend(envelope.event.payload_fields());
        self.encoder
            .encode(fields, self.strategy(schema.full_name, schema.avsc))
            .await
            .map_err(classify)
    }

    async fn decode(&self, bytes: &[u8]) -> Result<Envelope<E>, CodecError> {
        let (writer, fields) = self.reader.read_fields(bytes).await?;
        Ok(Envelope { metadata: metadata_from(&fields)?, event: E::from_record(&writer.full_name, &fields)? })
    }
}

/// The most a decoded value may allocate at once. A hostile record can claim a string or array
/// of any length in a few bytes; no event of ours comes near this (Kafka's default record
/// limit is 1 MiB).
pub const MAX_ALLOCATION_BYTES: usize = 8 * 1024 * 1024;

/// Sets [`MAX_ALLOCATION_BYTES`] for the process (apache-avro takes it once, before any decode).
pub fn limit_allocations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
    });
}
