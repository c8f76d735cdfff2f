//! Readers of the log: a partition-assigning reader for replays and tails, and a group consumer
//! for projectors.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{LogConfig, LogError, LogPosition, LogRecord, blocking, classify};

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

fn to_record(message: &BorrowedMessage<'_>) -> LogRecord {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|header| (header.key.to_string(), header.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    LogRecord {
        topic: message.topic().to_string(),
        position: LogPosition { partition: message.partition(), offset: message.offset() },
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

fn partitions_of(consumer: &StreamConsumer, topic: &str) -> Result<Vec<i32>, LogError> {
    let metadata = blocking(|| consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)).map_err(classify)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(LogError::Unavailable(format!("topic {topic} has no partitions")));
    }
    Ok(partitions)
}

/// Drops a consumer on a separate thread and gives up waiting after a bound, because dropping a
/// group consumer can hang (rust-rdkafka issue #509).
pub fn shut_down_consumer<C: Send + 'static>(consumer: C) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = done_tx.send(());
    });
    if done_rx.recv_timeout(Duration::from_secs(5)).is_err() {
        tracing::warn!(message = "A Kafka consumer did not close within 5 s; leaving it behind.");
    }
}

/// Reads every partition of one topic without a consumer group: replays and command-side tails.
pub struct TopicReader {
    consumer: Option<StreamConsumer>,
    partitions: Vec<i32>,
    /// Low and high watermark of every partition when the reader was opened.
    watermarks: BTreeMap<i32, (i64, i64)>,
}

impl TopicReader {
    /// Assigns every partition of `topic` from its first offset.
    pub fn from_beginning(config: &LogConfig, topic: &str) -> Result<Self, LogError> {
        Self::from_offsets(config, topic, &BTreeMap::new())
    }

    /// Assigns every partition of `topic`, starting at the given offsets (the beginning for
    /// partitions not listed).
    pub fn from_offsets(
        config: &LogConfig,
        topic: &str,
        start: &BTreeMap<i32, i64>,
    ) -> Result<Self, LogError> {
        Self::open(config, topic, start, None)
    }

    /// Assigns one partition of `topic` from `offset`.
    pub fn partition_from(config: &LogConfig, topic: &str, partition: i32, offset: i64) -> Result<Self, LogError> {
        Self::open(config, topic, &BTreeMap::from([(partition, offset)]), Some(partition))
    }

    fn open(
        config: &LogConfig,
        topic: &str,
        start: &BTreeMap<i32, i64>,
        only: Option<i32>,
    ) -> Result<Self, LogError> {
        let consumer: StreamConsumer = config
            .client_config()
            .set("group.id", format!("{}.reader.{}", config.namespace, uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", config.fetch_wait_ms.to_string())
            .set("isolation.level", "read_committed")
            .create()?;
        let mut partitions = partitions_of(&consumer, topic)?;
        if let Some(only) = only {
            partitions.retain(|p| *p == only);
        }
        // Asked before anything is assigned: once the consumer fetches, a query on its
        // connection waits behind the broker's held fetch (up to `fetch.wait.max.ms`).
        let mut watermarks = BTreeMap::new();
        for p in &partitions {
            let marks = blocking(|| consumer.fetch_watermarks(topic, *p, METADATA_TIMEOUT)).map_err(classify)?;
            watermarks.insert(*p, marks);
        }
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            let offset = start.get(p).map_or(Offset::Beginning, |o| Offset::Offset(*o));
            assignment.add_partition_offset(topic, *p, offset)?;
        }
        consumer.assign(&assignment)?;
        Ok(Self { consumer: Some(consumer), partitions, watermarks })
    }

    /// The partitions being read.
    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    fn consumer(&self) -> &StreamConsumer {
        self.consumer.as_ref().expect("consumer is present until drop")
    }

    /// The offset one past the last record of every partition, as of when the reader was
    /// opened.
    pub fn end_offsets(&self) -> BTreeMap<i32, i64> {
        self.watermarks.iter().map(|(p, (_, high))| (*p, *high)).collect()
    }

    /// Waits for the next record of any partition.
    pub async fn next(&self) -> Result<LogRecord, LogError> {
        let message = self.consumer().recv().await.map_err(classify)?;
        Ok(to_record(&message))
    }

    /// Reads records until every partition has reached its offset in `ends`.
    pub async fn read_until(
        &self,
        ends: &BTreeMap<i32, i64>,
        mut on_record: impl FnMut(LogRecord),
    ) -> Result<(), LogError> {
        let mut remaining = self.remaining_before(ends);
        while let Some(record) = self.next_within(&mut remaining).await? {
            on_record(record);
        }
        Ok(())
    }

    /// The partitions that still hold records below their offset in `ends`, for
    /// [`TopicReader::next_within`]. Call it before reading anything.
    pub fn remaining_before(&self, ends: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
        let mut remaining = BTreeMap::new();
        for (p, end) in ends {
            let (low, high) = self.watermarks.get(p).copied().unwrap_or((0, 0));
            // Partitions whose earliest retained offset is already at the end have nothing to read.
            if *end > low && high > low {
                remaining.insert(*p, *end);
            }
        }
        remaining
    }

    /// The next record below the offsets in `remaining`, or `None` once every partition has
    /// reached its end; partitions are removed from `remaining` as they finish.
    pub async fn next_within(
        &self,
        remaining: &mut BTreeMap<i32, i64>,
    ) -> Result<Option<LogRecord>, LogError> {
        loop {
            if remaining.is_empty() {
                return Ok(None);
            }
            // The end may lie past records never delivered (transaction markers, aborted
            // records): only the position tells, so look at it while nothing arrives (per
            // record it would cost a replay most of its speed).
            let Ok(record) = tokio::time::timeout(IDLE_POSITION_CHECK, self.next()).await else {
                self.forget_reached(remaining);
                continue;
            };
            let record = record?;
            let partition = record.position.partition;
            let Some(end) = remaining.get(&partition).copied() else { continue };
            if record.position.offset + 1 >= end {
                remaining.remove(&partition);
            }
            if record.position.offset < end {
                return Ok(Some(record));
            }
        }
    }

    /// Removes from `pending` (partition → end offset) the partitions whose read position has
    /// reached their end. The position also moves past what is never delivered to a
    /// `read_committed` reader (transaction markers, aborted records), so this is the only
    /// sound "caught up" test on a topic with transactions.
    pub fn forget_reached(&self, pending: &mut BTreeMap<i32, i64>) {
        if pending.is_empty() {
            return;
        }
        if let Ok(positions) = self.consumer().position() {
            for element in positions.elements() {
                if let Offset::Offset(position) = element.offset()
                    && pending.get(&element.partition()).is_some_and(|end| position >= *end)
                {
                    pending.remove(&element.partition());
                }
            }
        }
    }
}

/// How often a reader waiting for its end looks at its position while no record arrives.
const IDLE_POSITION_CHECK: Duration = Duration::from_millis(50);

impl Drop for TopicReader {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            shut_down_consumer(consumer);
        }
    }
}

/// How often librdkafka reports statistics, and so how fresh [`GroupConsumer::end_offset`] is.
const STATISTICS_INTERVAL_MS: &str = "1000";

/// Keeps the high watermarks that librdkafka reports in its statistics (it learns them from
/// every fetch answer), so a member knows how far behind it is without asking the broker.
/// Asking (ListOffsets, one round trip per partition) blocked projectors for hundreds of
/// milliseconds a second on a busy broker.
#[derive(Default)]
struct WatermarkContext {
    high: Mutex<BTreeMap<(String, i32), i64>>,
    /// Rebalances this member has been through.
    rebalances: AtomicU64,
}

impl ClientContext for WatermarkContext {
    fn stats(&self, statistics: Statistics) {
        let mut high = self.high.lock().expect("watermarks lock");
        for (topic, stats) in statistics.topics {
            // Partition -1 is librdkafka's internal one; a negative offset means not known yet.
            for (partition, stats) in stats.partitions {
                if partition >= 0 && stats.hi_offset >= 0 {
                    high.insert((topic.clone(), partition), stats.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for WatermarkContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, AtomicOrdering::Relaxed);
    }
}

/// A consumer-group member with offsets stored only after the caller's write succeeded.
pub struct GroupConsumer {
    consumer: Option<StreamConsumer<WatermarkContext>>,
}

impl GroupConsumer {
    /// Joins `group` and subscribes to `topics`; a new group starts at the beginning. Offsets
    /// stored with [`GroupConsumer::store_offset`] are committed every 500 ms.
    pub fn subscribe(config: &LogConfig, group: &str, topics: &[&str]) -> Result<Self, LogError> {
        Self::join(config, group, topics, true)
    }

    /// Joins `group` as a member that never commits offsets itself: they are committed in the
    /// transactions that append what the records caused ([`super::Transaction::consume`]).
    pub fn subscribe_transactional(config: &LogConfig, group: &str, topics: &[&str]) -> Result<Self, LogError> {
        Self::join(config, group, topics, false)
    }

    fn join(config: &LogConfig, group: &str, topics: &[&str], auto_commit: bool) -> Result<Self, LogError> {
        let consumer: StreamConsumer<WatermarkContext> = config
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", auto_commit.to_string())
            .set("auto.commit.interval.ms", "500")
            // Offsets are stored by the caller after its write, so a crash replays, never skips.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", config.fetch_wait_ms.to_string())
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .set("isolation.level", "read_committed")
            .create_with_context(WatermarkContext::default())?;
        consumer.subscribe(topics)?;
        Ok(Self { consumer: Some(consumer) })
    }

    /// The group metadata a transaction needs to commit this member's offsets (its generation,
    /// so the broker refuses a commit from a member that lost its partitions).
    pub(crate) fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer().group_metadata()
    }

    /// Whether `partition` of `topic` is still assigned to this member.
    pub fn is_assigned(&self, topic: &str, partition: i32) -> bool {
        self.assigned_partitions().iter().any(|(t, p)| t == topic && *p == partition)
    }

    fn consumer(&self) -> &StreamConsumer<WatermarkContext> {
        self.consumer.as_ref().expect("consumer is present until drop")
    }

    /// Waits for the next record.
    pub async fn next(&self) -> Result<LogRecord, LogError> {
        let message = self.consumer().recv().await.map_err(classify)?;
        Ok(to_record(&message))
    }

    /// Marks `record` as processed; its offset is committed with the next periodic commit.
    pub fn store_offset(&self, record: &LogRecord) -> Result<(), LogError> {
        self.consumer()
            .store_offset(&record.topic, record.position.partition, record.position.offset)
            .map_err(classify)
    }

    /// Commits the stored offsets now (on shutdown). Asynchronous: librdkafka's synchronous
    /// commit waits without a bound and hangs forever when the broker is gone.
    pub fn commit(&self) -> Result<(), LogError> {
        match self.consumer().commit_consumer_state(CommitMode::Async) {
            Ok(()) => Ok(()),
            // Nothing stored since the last commit.
            Err(e) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    /// How many rebalances this member has been through: records read in one epoch follow each
    /// other without a gap; across epochs, other members may have read the records between.
    pub fn assignment_epoch(&self) -> u64 {
        self.consumer().context().rebalances.load(AtomicOrdering::Relaxed)
    }

    /// Partitions currently assigned to this member.
    pub fn assigned_partitions(&self) -> Vec<(String, i32)> {
        self.consumer()
            .assignment()
            .map(|list| list.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect())
            .unwrap_or_default()
    }

    /// Pauses fetching from every assigned partition: for members that use the group only to
    /// learn which partitions they own.
    pub fn pause_assigned(&self) -> Result<(), LogError> {
        let assignment = self.consumer().assignment()?;
        if assignment.count() > 0 {
            self.consumer().pause(&assignment)?;
        }
        Ok(())
    }

    /// Waits up to `limit` for the next record; `None` when nothing arrived.
    pub async fn next_within_time(&self, limit: std::time::Duration) -> Result<Option<LogRecord>, LogError> {
        match tokio::time::timeout(limit, self.next()).await {
            Ok(record) => record.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The offset one past the last record of an assigned partition, as of the latest fetch
    /// answer (at most about a second old); `None` until the partition has been fetched.
    /// Never waits for the broker.
    pub fn end_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let high = self.consumer().context().high.lock().expect("watermarks lock");
        high.get(&(topic.to_string(), partition)).copied()
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            // Never a synchronous commit here: it has no timeout (see `commit`).
            let _ = consumer.commit_consumer_state(CommitMode::Async);
            consumer.unsubscribe();
            shut_down_consumer(consumer);
        }
    }
}
