//! The dead-letter topic: where readers park records they can never process, with the reason,
//! so they can go on; and the operators' resolutions of what was parked.

use std::collections::BTreeMap;

use super::{LogConfig, LogError, LogPosition, LogProducer, LogRecord, TopicReader, TopicSpec, ensure_topics};

const REASON: &str = "dlq_reason";
const CONSUMER: &str = "dlq_consumer";
const TOPIC: &str = "dlq_topic";
const PARTITION: &str = "dlq_partition";
const OFFSET: &str = "dlq_offset";
const RESOLUTION: &str = "dlq_resolution";

/// Where consumers park records they can never process, with the reason, so they can go on.
#[derive(Clone)]
pub struct DeadLetters {
    producer: LogProducer,
    topic: String,
}

/// One entry of the dead-letter topic: a parked record, or an operator's resolution of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its offset in the dead-letter topic: the number operators name it by.
    pub id: i64,
    /// Where the record was read.
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Who gave up on it (`inbox`, `order-saga`, `<topic>.commands`), or who resolved it.
    pub consumer: String,
    /// Why.
    pub reason: String,
    /// For a resolution, what was decided (`skip`, `replayed`); `None` for a parked record.
    pub resolution: Option<String>,
    /// The record's key.
    pub key: Vec<u8>,
    /// The record's value as it was.
    pub payload: Vec<u8>,
    /// The record's own headers (without the dead-letter ones).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl DeadLetter {
    fn from_record(record: &LogRecord) -> Option<Self> {
        let text = |name: &str| record.header(name).map(|v| String::from_utf8_lossy(v).into_owned());
        Some(Self {
            id: record.position.offset,
            topic: text(TOPIC)?,
            partition: text(PARTITION)?.parse().ok()?,
            offset: text(OFFSET)?.parse().ok()?,
            consumer: text(CONSUMER).unwrap_or_default(),
            reason: text(REASON).unwrap_or_default(),
            resolution: text(RESOLUTION),
            key: record.key.clone().unwrap_or_default(),
            payload: record.payload.clone().unwrap_or_default(),
            headers: record.headers.iter().filter(|(k, _)| !k.starts_with("dlq_")).cloned().collect(),
        })
    }

    /// The source position, as `topic/partition@offset`.
    pub fn source(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

impl DeadLetters {
    /// The deployment's dead-letter topic (`<namespace>.dead-letter`), created if missing.
    pub async fn open(config: &LogConfig) -> Result<Self, LogError> {
        let topic = Self::topic_of(config);
        ensure_topics(config, &[TopicSpec { name: topic.clone(), partitions: 1, compacted: false, config: Vec::new() }]).await?;
        Ok(Self::with_producer(config, LogProducer::new(config)?))
    }

    /// The dead-letter topic of an existing deployment, written through `producer`.
    pub fn with_producer(config: &LogConfig, producer: LogProducer) -> Self {
        Self { producer, topic: Self::topic_of(config) }
    }

    fn topic_of(config: &LogConfig) -> String {
        config.topic("dead-letter")
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Parks `record` with `reason`; `consumer` names who gave up on it.
    pub async fn park(&self, record: &LogRecord, consumer: &str, reason: &str) -> Result<LogPosition, LogError> {
        tracing::warn!(message = "Parked a record in the dead-letter topic.", topic = %record.topic, partition = record.position.partition, offset = record.position.offset, %reason, %consumer);
        let key = record.key.as_deref().unwrap_or_default();
        let payload = record.payload.as_deref().unwrap_or_default();
        let own: Vec<(&str, &[u8])> = record.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        self.append(&record.topic, record.position.partition, record.position.offset, consumer, reason, None, key, payload, &own)
            .await
    }

    /// Records an operator's decision about a parked entry (`skip`, `replayed`).
    pub async fn resolve(&self, entry: &DeadLetter, resolution: &str, by: &str) -> Result<LogPosition, LogError> {
        let reason = format!("{resolution} of dead letter {}", entry.id);
        self.append(&entry.topic, entry.partition, entry.offset, by, &reason, Some(resolution), &entry.key, &[], &[]).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn append(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        consumer: &str,
        reason: &str,
        resolution: Option<&str>,
        key: &[u8],
        payload: &[u8],
        own: &[(&str, &[u8])],
    ) -> Result<LogPosition, LogError> {
        let (partition, offset) = (partition.to_string(), offset.to_string());
        let mut headers: Vec<(&str, &[u8])> = vec![
            (REASON, reason.as_bytes()),
            (CONSUMER, consumer.as_bytes()),
            (TOPIC, topic.as_bytes()),
            (PARTITION, partition.as_bytes()),
            (OFFSET, offset.as_bytes()),
        ];
        if let Some(resolution) = resolution {
            headers.push((RESOLUTION, resolution.as_bytes()));
        }
        headers.extend_from_slice(own);
        self.producer.append(&self.topic, key, payload, &headers).await
    }

    /// Every entry of the deployment's dead-letter topic, oldest first (empty when it does not
    /// exist yet).
    pub async fn read_all(config: &LogConfig) -> Result<Vec<DeadLetter>, LogError> {
        let reader = match TopicReader::from_beginning(config, &Self::topic_of(config)) {
            Ok(reader) => reader,
            Err(LogError::Unavailable(reason)) if reason.contains("no partitions") => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let ends: BTreeMap<i32, i64> = reader.end_offsets();
        let mut entries = Vec::new();
        reader
            .read_until(&ends, |record| {
                if let Some(entry) = DeadLetter::from_record(&record) {
                    entries.push(entry);
                }
            })
            .await?;
        entries.sort_by_key(|entry| entry.id);
        Ok(entries)
    }
}
