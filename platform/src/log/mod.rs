//! The log client on `rdkafka`: idempotent producer, topic admin, and readers.

mod config;
mod consumer;
mod dead_letter;
mod transaction;

pub use config::LogConfig;
pub use dead_letter::{DeadLetter, DeadLetters};
pub use consumer::{EndOffsets, GroupConsumer, ReadUntil, RecordHeaders, StartOffsets, TopicBatches, TopicReader, shut_down_consumer};
pub use transaction::{OutgoingRecord, TRANSACTION_TIMEOUT, Transaction, TransactionalProducer};

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

/// Failures of the log client.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The broker could not be reached or did not answer in time.
    #[error("The log is unavailable: {0}")]
    Unavailable(String),
    /// Any other client failure.
    #[error("Log client failure: {0}")]
    Client(#[from] KafkaError),
}

/// A position in the log: the partition of a topic and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct LogPosition {
    /// Partition number.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// One record read from the log.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Topic the record was read from (shared by the records of a batch: one allocation per
    /// record was a tenth of a reader thread's time).
    pub topic: Arc<str>,
    /// Where the record sits.
    pub position: LogPosition,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Record headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's timestamp (ms since the epoch: its creation time, or its append time on
    /// topics configured so), when it has one.
    pub timestamp: Option<i64>,
}

impl LogRecord {
    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
}

/// What a topic is for, which decides how it is created.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// Full topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Compacted (`cleanup.policy=compact`) rather than retained forever.
    pub compacted: bool,
    /// Topic configs of its own, under those of the environment (`KAFKA_*TOPIC_CONFIG`).
    pub config: Vec<(&'static str, &'static str)>,
}

/// Producer with `acks=all` and idempotence, so retries never duplicate or reorder records.
///
/// A producer that hit a fatal error (librdkafka can no longer guarantee idempotence, e.g.
/// after an out-of-order sequence) is replaced by a fresh one.
#[derive(Clone)]
pub struct LogProducer {
    config: ClientConfig,
    inner: Arc<RwLock<FutureProducer>>,
}

/// How long an append may take before the caller is told the log is unavailable.
pub const APPEND_TIMEOUT: Duration = Duration::from_millis(3500);

impl LogProducer {
    /// Creates the producer; it connects lazily.
    pub fn new(config: &LogConfig) -> Result<Self, LogError> {
        let mut client = config.producer_config();
        client.set("linger.ms", "1").set("message.timeout.ms", APPEND_TIMEOUT.as_millis().to_string());
        let inner = client.create()?;
        Ok(Self { config: client, inner: Arc::new(RwLock::new(inner)) })
    }

    /// Appends a tombstone (a record without a value) for `key`: on a compacted topic, the
    /// key's earlier records go at the next compaction.
    pub async fn append_tombstone(&self, topic: &str, key: &[u8]) -> Result<LogPosition, LogError> {
        self.deliver(FutureRecord::<[u8], [u8]>::to(topic).key(key)).await
    }

    /// Appends one record and returns where it landed once the broker has acknowledged it.
    pub async fn append(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<LogPosition, LogError> {
        self.deliver(FutureRecord::to(topic).key(key).payload(payload).headers(owned_headers(headers))).await
    }

    async fn deliver(&self, record: FutureRecord<'_, [u8], [u8]>) -> Result<LogPosition, LogError> {
        let producer = self.inner.read().expect("producer lock").clone();
        match producer.send(record, Timeout::After(APPEND_TIMEOUT)).await {
            Ok(delivery) => Ok(LogPosition { partition: delivery.partition, offset: delivery.offset }),
            Err((error, _)) => {
                if producer.client().fatal_error().is_some() {
                    self.replace(&producer);
                }
                drop_off_runtime(producer);
                Err(classify(error))
            }
        }
    }

    fn replace(&self, failed: &FutureProducer) {
        let mut current = self.inner.write().expect("producer lock");
        // Another append may have replaced it already.
        if std::ptr::eq(current.client().native_ptr(), failed.client().native_ptr()) {
            match self.config.create::<FutureProducer>() {
                Ok(fresh) => drop_off_runtime(std::mem::replace(&mut *current, fresh)),
                Err(error) => tracing::warn!(message = "Failed to recreate the producer.", %error),
            }
        }
    }
}

/// Record headers as librdkafka takes them.
pub(crate) fn owned_headers(headers: &[(&str, &[u8])]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new_with_capacity(headers.len()), |owned, (name, value)| {
        owned.insert(Header { key: name, value: Some(*value) })
    })
}

/// Dropping a producer flushes it, which blocks while the broker is away: never on a runtime
/// worker thread.
pub(crate) fn drop_off_runtime(producer: FutureProducer) {
    std::thread::spawn(move || drop(producer));
}

/// Runs a blocking librdkafka call without stalling the async runtime's worker thread.
pub(crate) fn blocking<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

/// Maps librdkafka's "could not reach the broker" family to [`LogError::Unavailable`].
pub(crate) fn classify(error: KafkaError) -> LogError {
    let unavailable = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
        )
    );
    if unavailable { LogError::Unavailable(error.to_string()) } else { LogError::Client(error) }
}

/// Whether the broker lists `topic`.
pub async fn topic_exists(config: &LogConfig, topic: &str) -> Result<bool, LogError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    // Every topic's metadata: asking for one by name could have the broker create it.
    let metadata = blocking(|| admin.inner().fetch_metadata(None, Duration::from_secs(10))).map_err(classify)?;
    Ok(metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
}

/// Deletes `topic` (with all its records) and waits until the broker no longer lists it,
/// since deletion is asynchronous; a topic that does not exist is no error.
pub async fn delete_topic(config: &LogConfig, topic: &str) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(&[topic], &options).await.map_err(classify)? {
        if let Err((name, code)) = result
            && code != RDKafkaErrorCode::UnknownTopicOrPartition
        {
            return Err(LogError::Unavailable(format!("could not delete {name}: {code}")));
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while topic_exists(config, topic).await? {
        if tokio::time::Instant::now() > deadline {
            return Err(LogError::Unavailable(format!("{topic} was still listed 60 s after its deletion")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(config: &LogConfig, topics: &[TopicSpec]) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut topic = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(config.replication_factor),
            );
            let extra = if t.compacted { &config.compacted_topic_config } else { &config.topic_config };
            for (key, value) in &t.config {
                if !extra.iter().any(|(k, _)| k == key) {
                    topic = topic.set(key, value);
                }
            }
            for (key, value) in extra {
                if !(t.compacted && key == "cleanup.policy") {
                    topic = topic.set(key, value);
                }
            }
            if t.compacted { topic.set("cleanup.policy", "compact") } else { topic }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = tokio::time::timeout(
        Duration::from_secs(15),
        admin.create_topics(new_topics.iter(), &options),
    )
    .await
    .map_err(|_| LogError::Unavailable("creating topics timed out".into()))?
    .map_err(classify)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(LogError::Unavailable(format!("could not create {topic}: {code}")));
            }
        }
    }
    Ok(())
}

