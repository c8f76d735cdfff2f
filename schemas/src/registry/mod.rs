//! The bundled Confluent-compatible schema registry for single-machine use.
//!
//! The state ([`RegistryState`]) is a pure state machine; every change is a [`RegistryRecord`]
//! appended to the compacted topic `<namespace>._schemas` before it is applied, and
//! [`SchemaRegistry::open`] rebuilds the state by replaying that topic, so a restart loses
//! nothing. [`router`] serves the Confluent REST API subset that Kafka clients and
//! `schema_registry_converter` use.

mod http;
mod record;
mod state;

pub use http::{router, routes};
pub use record::{RecordError, RegistryRecord};
pub use state::{
    Applied, ParsedSchema, Registration, RegistryError, RegistryState, SchemaVersion, VersionSpec,
};

pub use crate::compatibility::CompatibilityLevel;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use platform::log::{LogConfig, LogError, LogProducer, TopicReader, TopicSpec, ensure_topics};

/// How long a catch-up read of the schemas topic may take before the log counts as unavailable.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(15);

/// Failures of registry operations: refusals of the registry itself, or the log being unusable.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request was refused (unknown subject, invalid or incompatible schema, …).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The log did not acknowledge the change. It may still have landed: the registry reads
    /// the log back before its next write, so a retry answers consistently.
    #[error("Failed to store the change in the schemas topic: {0}")]
    Store(#[source] LogError),
    /// The schemas topic could not be read back.
    #[error("Failed to read the schemas topic: {0}")]
    Read(#[source] LogError),
}

/// A schema registry whose state lives in a compacted Kafka topic.
///
/// Cheap to clone (the state is shared). Writes are serialised by one mutex and answer only
/// after the broker acknowledged the record; reads are answered from memory.
///
/// Run a **single registry instance per cluster and namespace**: the instance assigns ids and
/// versions from its own state, so two instances writing at once could hand out the same id.
/// (Records from a second writer are detected and replayed in log order, and conflicting ones are
/// skipped identically on every replay, but clients of the loser may already hold its answer.)
#[derive(Clone)]
pub struct SchemaRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    config: LogConfig,
    topic: String,
    state: RwLock<RegistryState>,
    writer: tokio::sync::Mutex<Writer>,
}

/// The single writer: its producer and what it knows about the log.
struct Writer {
    producer: LogProducer,
    /// Per partition, the offset the next record will get if nobody else writes.
    next_offsets: BTreeMap<i32, i64>,
    /// Set after an append whose outcome is unknown; the next write first catches up.
    stale: bool,
}

impl SchemaRegistry {
    /// Creates the schemas topic if needed (1 partition, compacted) and rebuilds the state from
    /// it.
    pub async fn open(config: &LogConfig) -> anyhow::Result<SchemaRegistry> {
        let topic = config.topic("_schemas");
        ensure_topics(config, &[TopicSpec { name: topic.clone(), partitions: 1, compacted: true, config: Vec::new() }])
            .await
            .with_context(|| format!("Failed to create the schemas topic {topic}"))?;
        let producer = LogProducer::new(config).context("Failed to create the schemas producer")?;
        let registry = SchemaRegistry {
            inner: Arc::new(Inner {
                config: config.clone(),
                topic: topic.clone(),
                state: RwLock::new(RegistryState::default()),
                writer: tokio::sync::Mutex::new(Writer {
                    producer,
                    next_offsets: BTreeMap::new(),
                    stale: false,
                }),
            }),
        };
        let started = Instant::now();
        let mut writer = registry.inner.writer.lock().await;
        let applied = registry
            .catch_up(&mut writer)
            .await
            .with_context(|| format!("Failed to replay the schemas topic {topic}"))?;
        drop(writer);
        let subjects = registry.read(|state| state.subjects().len());
        tracing::info!(
            message = "Schema registry state rebuilt.",
            %topic,
            records = applied,
            subjects,
            elapsed_ms = started.elapsed().as_millis() as u64
        );
        Ok(registry)
    }

    /// The full name of the topic holding the registry's records.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// Answers a question from the current state.
    pub fn read<R>(&self, question: impl FnOnce(&RegistryState) -> R) -> R {
        // A panic while holding the lock cannot leave a half-applied record (apply does not
        // panic between its writes), so a poisoned lock still guards a consistent state.
        let state = self.inner.state.read().unwrap_or_else(PoisonError::into_inner);
        question(&state)
    }

    /// Registers `schema` under `subject` and returns its id; an already registered schema
    /// answers its id without a new version.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, ServiceError> {
        let mut writer = self.inner.writer.lock().await;
        self.refresh_if_stale(&mut writer).await?;
        match self.read(|state| state.prepare_register(subject, schema))? {
            Registration::Existing(version) => Ok(version.id),
            Registration::New { record, id } => {
                self.append(&mut writer, &record).await?;
                tracing::info!(message = "Schema registered.", subject, id);
                Ok(id)
            }
        }
    }

    /// Sets the compatibility level, globally (`subject: None`) or for one subject.
    pub async fn set_compatibility_level(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), ServiceError> {
        let mut writer = self.inner.writer.lock().await;
        self.refresh_if_stale(&mut writer).await?;
        let record = self.read(|state| state.prepare_set_level(subject, level));
        self.append(&mut writer, &record).await?;
        tracing::info!(message = "Compatibility level set.", subject = subject.unwrap_or("<global>"), %level);
        Ok(())
    }

    async fn refresh_if_stale(&self, writer: &mut Writer) -> Result<(), ServiceError> {
        if writer.stale {
            self.catch_up(writer).await.map_err(ServiceError::Read)?;
        }
        Ok(())
    }

    /// Appends `record`, waits for the acknowledgement, then applies it.
    async fn append(
        &self,
        writer: &mut Writer,
        record: &RegistryRecord,
    ) -> Result<(), ServiceError> {
        let (key, value) = record.encode();
        let position = match writer.producer.append(&self.inner.topic, &key, &value, &[]).await {
            Ok(position) => position,
            Err(error) => {
                // The record may still have landed: read the log before deciding anything else.
                writer.stale = true;
                return Err(ServiceError::Store(error));
            }
        };
        let expected = writer.next_offsets.get(&position.partition).copied().unwrap_or(0);
        if position.offset == expected {
            self.apply(record);
            writer.next_offsets.insert(position.partition, position.offset + 1);
            return Ok(());
        }
        // Someone else wrote before us (or an earlier failed append did land): apply everything
        // in log order, our record included, exactly as a replay would.
        tracing::warn!(
            message = "The schemas topic holds records this registry did not write; catching up.",
            topic = %self.inner.topic,
            expected,
            offset = position.offset
        );
        if let Err(error) = self.catch_up(writer).await {
            writer.stale = true;
            return Err(ServiceError::Read(error));
        }
        Ok(())
    }

    fn apply(&self, record: &RegistryRecord) {
        let mut state = self.inner.state.write().unwrap_or_else(PoisonError::into_inner);
        if let Applied::Conflict(reason) = state.apply(record) {
            tracing::warn!(message = "Skipped a conflicting schemas record.", %reason);
        }
    }

    /// Reads the topic from `writer.next_offsets` to its current end and applies every record;
    /// returns how many were read.
    async fn catch_up(&self, writer: &mut Writer) -> Result<usize, LogError> {
        let read = tokio::time::timeout(CATCH_UP_TIMEOUT, self.read_from(&writer.next_offsets))
            .await
            .map_err(|_| LogError::Unavailable("reading the schemas topic timed out".into()))??;
        let (records, ends) = read;
        let count = records.len();
        for record in records {
            let decoded = RegistryRecord::decode(
                record.key.as_deref().unwrap_or_default(),
                record.payload.as_deref(),
            );
            match decoded {
                Ok(Some(registry_record)) => self.apply(&registry_record),
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    message = "Skipped an undecodable schemas record.",
                    offset = record.position.offset,
                    %error
                ),
            }
        }
        for (partition, end) in ends {
            let next = writer.next_offsets.entry(partition).or_insert(0);
            *next = (*next).max(end);
        }
        writer.stale = false;
        Ok(count)
    }

    async fn read_from(
        &self,
        start: &BTreeMap<i32, i64>,
    ) -> Result<(Vec<platform::log::LogRecord>, BTreeMap<i32, i64>), LogError> {
        let reader = self.reader_from(start).await?;
        let ends = reader.end_offsets();
        // Only partitions with something past the start: read_until would wait for the others.
        let pending: BTreeMap<i32, i64> = ends
            .iter()
            .filter(|(partition, end)| **end > start.get(partition).copied().unwrap_or(0))
            .map(|(partition, end)| (*partition, *end))
            .collect();
        let mut records = Vec::new();
        if !pending.is_empty() {
            reader.read_until(&pending, |record| records.push(record)).await?;
        }
        // Records past the ends we were asked for are applied by the next catch-up instead.
        records.retain(|r| {
            ends.get(&r.position.partition).is_some_and(|end| r.position.offset < *end)
        });
        records.sort_by_key(|r| r.position);
        Ok((records, ends))
    }

    async fn reader_from(&self, start: &BTreeMap<i32, i64>) -> Result<TopicReader, LogError> {
        // Right after creation the topic's metadata can lag; retry briefly.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TopicReader::from_offsets(&self.inner.config, &self.inner.topic, start) {
                Ok(reader) => return Ok(reader),
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(message = "Schemas topic not readable yet; retrying.", %error);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
