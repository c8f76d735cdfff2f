//! Transactions: records that become visible to `read_committed` readers all together or not
//! at all, optionally with a consumer group's offsets (consume-transform-produce).
//!
//! A [`TransactionalProducer`] has a stable `transactional.id`. Whoever initialises that id
//! next fences it: the broker aborts its open transaction at once and refuses its commits, so a
//! writer that crashed or hung between two records can never make them visible.

use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::sync::{Mutex, MutexGuard};

use super::{APPEND_TIMEOUT, GroupConsumer, LogConfig, LogError, LogPosition, LogRecord, blocking, classify};

/// How long the broker keeps a transaction open before aborting it on its own: the bound on
/// how long a writer that died mid-transaction (and whose id nobody initialises again) holds
/// back `read_committed` readers of its partitions.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// First use of an id: the broker finds its coordinator and fences the id's previous owner.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A producer whose appends happen in transactions.
pub struct TransactionalProducer {
    config: ClientConfig,
    /// `None` until first use, and again after a fatal error (fenced by a newer owner of the
    /// id, or unable to go on): the next transaction initialises a fresh producer.
    producer: Mutex<Option<FutureProducer>>,
}

/// An open transaction; dropping it without [`Transaction::commit`] aborts it.
pub struct Transaction<'a> {
    slot: MutexGuard<'a, Option<FutureProducer>>,
    deliveries: Vec<DeliveryFuture>,
    positions: Vec<LogPosition>,
    open: bool,
}

fn transaction_error(error: KafkaError, slot: &mut Option<FutureProducer>) -> LogError {
    if let KafkaError::Transaction(detail) = &error {
        if detail.is_fatal() {
            tracing::warn!(message = "A transactional producer was fenced or failed fatally; it will be replaced.", %error);
            if let Some(producer) = slot.take() {
                super::drop_off_runtime(producer);
            }
        }
        return LogError::Unavailable(error.to_string());
    }
    classify(error)
}

impl TransactionalProducer {
    /// A producer for `transactional_id`; it connects on the first transaction.
    pub fn new(config: &LogConfig, transactional_id: &str) -> Self {
        let mut client = config.producer_config();
        client
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", TRANSACTION_TIMEOUT.as_millis().to_string())
            .set("linger.ms", "1")
            .set("message.timeout.ms", APPEND_TIMEOUT.as_millis().to_string());
        Self { config: client, producer: Mutex::new(None) }
    }

    /// Opens a transaction, initialising the producer first if needed (which aborts whatever
    /// an earlier owner of the id left open). Transactions of one producer run one at a time.
    pub async fn begin(&self) -> Result<Transaction<'_>, LogError> {
        let mut slot = self.producer.lock().await;
        if slot.is_none() {
            let producer: FutureProducer = self.config.create()?;
            if let Err(error) = blocking(|| producer.init_transactions(INIT_TIMEOUT)) {
                super::drop_off_runtime(producer);
                return Err(classify(error));
            }
            *slot = Some(producer);
        }
        let producer = slot.as_ref().expect("initialised above");
        if let Err(error) = blocking(|| producer.begin_transaction()) {
            return Err(transaction_error(error, &mut slot));
        }
        Ok(Transaction { slot, deliveries: Vec::new(), positions: Vec::new(), open: true })
    }

    /// Appends `records` (topic, partition, key, value, headers) in one transaction and returns
    /// where they landed once committed.
    pub async fn append_all(&self, records: &[OutgoingRecord<'_>]) -> Result<Vec<LogPosition>, LogError> {
        let mut transaction = self.begin().await?;
        for record in records {
            transaction.send(record)?;
        }
        transaction.commit().await
    }
}

/// A record to append.
pub struct OutgoingRecord<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition (the key's partition, computed by the caller).
    pub partition: i32,
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub payload: &'a [u8],
    /// Headers.
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl Transaction<'_> {
    fn producer(&self) -> &FutureProducer {
        self.slot.as_ref().expect("an open transaction has its producer")
    }

    /// Adds a record to the transaction; it is visible to `read_committed` readers only once
    /// the transaction commits.
    pub fn send(&mut self, record: &OutgoingRecord<'_>) -> Result<(), LogError> {
        let future = FutureRecord::to(record.topic)
            .partition(record.partition)
            .key(record.key)
            .payload(record.payload)
            .headers(super::owned_headers(&record.headers));
        let delivery = self.producer().send_result(future).map_err(|(error, _)| classify(error))?;
        self.deliveries.push(delivery);
        Ok(())
    }

    /// Also commits a consumer group's offsets (the next offsets to read) with the
    /// transaction: consume-transform-produce.
    pub fn send_offsets(&mut self, offsets: &TopicPartitionList, group: &ConsumerGroupMetadata) -> Result<(), LogError> {
        let result = blocking(|| self.producer().send_offsets_to_transaction(offsets, group, APPEND_TIMEOUT));
        result.map_err(|error| transaction_error(error, &mut self.slot))
    }

    /// Commits `consumer`'s offsets past `records` with this transaction (consume-transform-
    /// produce): the records count as consumed exactly when what they caused is visible.
    pub fn consume<'r>(&mut self, consumer: &GroupConsumer, records: impl IntoIterator<Item = &'r LogRecord>) -> Result<(), LogError> {
        let mut next: std::collections::BTreeMap<(&str, i32), i64> = std::collections::BTreeMap::new();
        for record in records {
            let entry = next.entry((&*record.topic, record.position.partition)).or_insert(0);
            *entry = (*entry).max(record.position.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            offsets.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))?;
        }
        let group = consumer.group_metadata().ok_or_else(|| LogError::Unavailable("the consumer has no group metadata".into()))?;
        self.send_offsets(&offsets, &group)
    }

    /// Commits; the positions of the records sent, in order.
    pub async fn commit(mut self) -> Result<Vec<LogPosition>, LogError> {
        self.open = false;
        let committed = blocking(|| self.producer().commit_transaction(APPEND_TIMEOUT));
        if let Err(error) = committed {
            let requires_abort = matches!(&error, KafkaError::Transaction(e) if e.txn_requires_abort());
            if requires_abort && let Some(producer) = self.slot.as_ref() {
                let _ = blocking(|| producer.abort_transaction(APPEND_TIMEOUT));
            }
            return Err(transaction_error(error, &mut self.slot));
        }
        self.written().await?;
        Ok(std::mem::take(&mut self.positions))
    }

    /// Waits until the broker holds every record sent so far. They stay invisible to
    /// `read_committed` readers until the commit.
    pub async fn written(&mut self) -> Result<(), LogError> {
        for delivery in std::mem::take(&mut self.deliveries) {
            match delivery.await {
                Ok(Ok(delivery)) => self.positions.push(LogPosition { partition: delivery.partition, offset: delivery.offset }),
                Ok(Err((error, _))) => return Err(classify(error)),
                Err(_) => return Err(LogError::Unavailable("the producer went away".into())),
            }
        }
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open
            && let Some(producer) = self.slot.as_ref()
            && let Err(error) = blocking(|| producer.abort_transaction(APPEND_TIMEOUT))
        {
            let error = transaction_error(error, &mut self.slot);
            tracing::warn!(message = "Failed to abort a transaction; the broker aborts it at its timeout.", %error);
        }
    }
}
