//! Readers of the log: a partition-assigning reader for replays and tails, and a group consumer
//! for projectors.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use futures::FutureExt as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{LogConfig, LogError, LogPosition, LogRecord, blocking, classify};

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

fn to_record(message: &BorrowedMessage<'_>) -> LogRecord {
    to_record_with(message, RecordHeaders::Kept, &mut None)
}

/// `topic` keeps the name of the last record's topic, for the next record to share.
fn to_record_with(message: &BorrowedMessage<'_>, kept: RecordHeaders, topic: &mut Option<Arc<str>>) -> LogRecord {
    let headers = (kept == RecordHeaders::Kept)
        .then(|| message.headers())
        .flatten()
        .map(|h| {
            h.iter()
                .map(|header| (header.key.to_string(), header.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    let name = message.topic();
    let topic = match topic {
        Some(last) if **last == *name => last.clone(),
        _ => topic.insert(Arc::from(name)).clone(),
    };
    LogRecord {
        topic,
        position: LogPosition { partition: message.partition(), offset: message.offset() },
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp: message.timestamp().to_millis(),
    }
}

fn partitions_of<C: ConsumerContext + 'static>(consumer: &impl Consumer<C>, topic: &str) -> Result<Vec<i32>, LogError> {
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

/// More partitions than any topic of ours has (for start maps that name them all).
const MAX_PARTITIONS: i32 = 4096;

/// Reads every partition of one topic without a consumer group: replays and command-side tails.
pub struct TopicReader {
    consumer: Option<StreamConsumer>,
    assigned: Assigned,
}

/// What a reader without a group was assigned.
struct Assigned {
    partitions: Vec<i32>,
    /// Low and high watermark of every partition when the reader was opened.
    watermarks: BTreeMap<i32, (i64, i64)>,
    /// Where each partition's reading starts.
    starts: BTreeMap<i32, i64>,
}

/// A group-less reader's client settings (its group id only names it).
fn reader_config(config: &LogConfig) -> rdkafka::ClientConfig {
    let mut client = config.consumer_config();
    client
        .set("group.id", format!("{}.reader.{}", config.namespace, uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", config.fetch_wait_ms.to_string())
        .set("isolation.level", "read_committed");
    client
}

/// Assigns the partitions of `topic` (only `only` when given) from the offsets in `start`
/// (the beginning for partitions not listed).
fn assign<C: ConsumerContext + 'static>(
    consumer: &impl Consumer<C>,
    topic: &str,
    start: &BTreeMap<i32, i64>,
    only: Option<i32>,
) -> Result<Assigned, LogError> {
    let mut partitions = partitions_of(consumer, topic)?;
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
    let mut starts = BTreeMap::new();
    for p in &partitions {
        // Outside the retained range the broker would apply `auto.offset.reset` and skip
        // to the end: start at the nearest retained offset instead.
        let (low, high) = watermarks[p];
        let offset = start.get(p).map_or(low, |o| (*o).clamp(low, high));
        starts.insert(*p, offset);
        assignment.add_partition_offset(topic, *p, Offset::Offset(offset))?;
    }
    consumer.assign(&assignment)?;
    Ok(Assigned { partitions, watermarks, starts })
}

impl Assigned {
    fn end_offsets(&self) -> BTreeMap<i32, i64> {
        self.watermarks.iter().map(|(p, (_, high))| (*p, *high)).collect()
    }

    fn remaining_before(&self, ends: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
        let mut remaining = BTreeMap::new();
        for (p, end) in ends {
            let (low, high) = self.watermarks.get(p).copied().unwrap_or((0, 0));
            let start = self.starts.get(p).copied().unwrap_or(low);
            // Partitions read from their end (or with nothing retained) have nothing to read:
            // waiting for their position to reach the end would wait for ever, as a consumer
            // that fetched nothing has no position.
            if *end > start && high > low {
                remaining.insert(*p, *end);
            }
        }
        remaining
    }
}

/// Removes from `pending` (partition → end offset) the partitions whose read position has
/// reached their end.
fn forget_reached<C: ConsumerContext + 'static>(consumer: &impl Consumer<C>, pending: &mut BTreeMap<i32, i64>) {
    if pending.is_empty() {
        return;
    }
    if let Ok(positions) = consumer.position() {
        for element in positions.elements() {
            if let Offset::Offset(position) = element.offset()
                && pending.get(&element.partition()).is_some_and(|end| position >= *end)
            {
                pending.remove(&element.partition());
            }
        }
    }
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

    /// Assigns every partition of `topic` from its end as of now: only what is appended from
    /// here on (live tails).
    pub fn from_end(config: &LogConfig, topic: &str) -> Result<Self, LogError> {
        // Clamped to each partition's high watermark by `open`.
        let ends = (0..MAX_PARTITIONS).map(|p| (p, i64::MAX)).collect();
        Self::open(config, topic, &ends, None)
    }

    /// Assigns one partition of `topic` from `offset`.
    pub fn partition_from(config: &LogConfig, topic: &str, partition: i32, offset: i64) -> Result<Self, LogError> {
        Self::open(config, topic, &BTreeMap::from([(partition, offset)]), Some(partition))
    }

    /// Assigns the partitions of `topic` (only `only` when given) from the offsets in `start`
    /// (the beginning for partitions not listed).
    pub fn open(
        config: &LogConfig,
        topic: &str,
        start: &BTreeMap<i32, i64>,
        only: Option<i32>,
    ) -> Result<Self, LogError> {
        let consumer: StreamConsumer = reader_config(config).create()?;
        let assigned = assign(&consumer, topic, start, only)?;
        Ok(Self { consumer: Some(consumer), assigned })
    }

    /// The partitions being read.
    pub fn partitions(&self) -> &[i32] {
        &self.assigned.partitions
    }

    fn consumer(&self) -> &StreamConsumer {
        self.consumer.as_ref().expect("consumer is present until drop")
    }

    /// The offset one past the last record of every partition, as of when the reader was
    /// opened.
    pub fn end_offsets(&self) -> BTreeMap<i32, i64> {
        self.assigned.end_offsets()
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
        self.assigned.remaining_before(ends)
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
            if let Some(record) = within(remaining, record?) {
                return Ok(Some(record));
            }
        }
    }

    /// The next record of any partition if one has arrived already, without waiting.
    pub fn next_arrived(&self) -> Option<Result<LogRecord, LogError>> {
        self.next().now_or_never()
    }

    /// Removes from `pending` (partition → end offset) the partitions whose read position has
    /// reached their end. The position also moves past what is never delivered to a
    /// `read_committed` reader (transaction markers, aborted records), so this is the only
    /// sound "caught up" test on a topic with transactions.
    pub fn forget_reached(&self, pending: &mut BTreeMap<i32, i64>) {
        forget_reached(self.consumer(), pending);
    }
}

/// `record` when it lies below its partition's end in `remaining`, taking the partition out of
/// `remaining` once its last record is read.
fn within(remaining: &mut BTreeMap<i32, i64>, record: LogRecord) -> Option<LogRecord> {
    let partition = record.position.partition;
    let end = remaining.get(&partition).copied()?;
    if record.position.offset + 1 >= end {
        remaining.remove(&partition);
    }
    (record.position.offset < end).then_some(record)
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

/// Whether a [`TopicBatches`] copies each record's headers. Reading them makes librdkafka parse
/// them into a list and the copy takes three allocations a record: a replay or an export that
/// never looks at them reads a fifth faster without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordHeaders {
    /// Copied into [`LogRecord::headers`].
    Kept,
    /// Left out ([`LogRecord::headers`] is empty).
    Dropped,
}

/// Where a [`TopicBatches`] stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadUntil {
    /// Each partition's end when the reader was opened.
    End,
    /// These offsets (partitions not listed are not read).
    Offsets(BTreeMap<i32, i64>),
    /// Never: what is appended is read as it comes, until the reader is dropped.
    Never,
}

/// Batches of one topic's records, read without a group on a thread of its own: the way
/// through a backlog (replays, exports). The thread polls a `BaseConsumer` back to back, as a
/// raw consume does, and hands over what has arrived while the caller works on the last
/// batches; awaiting records one by one made the readers wait for the log as long as they
/// worked.
pub struct TopicBatches {
    batches: tokio::sync::mpsc::Receiver<Result<Vec<LogRecord>, LogError>>,
    end_offsets: BTreeMap<i32, i64>,
}

/// Batches read ahead of the caller.
const BATCHES_AHEAD: usize = 8;

impl TopicBatches {
    /// Assigns the partitions of `topic` (only `only` when given) from the offsets in `start`
    /// (the beginning for partitions not listed) and reads up to `until`, in batches of at
    /// most `max` records, with or without their headers.
    pub fn open(
        config: &LogConfig,
        topic: &str,
        start: &BTreeMap<i32, i64>,
        only: Option<i32>,
        until: ReadUntil,
        max: usize,
        headers: RecordHeaders,
    ) -> Result<Self, LogError> {
        let consumer: BaseConsumer = reader_config(config).create()?;
        let assigned = assign(&consumer, topic, start, only)?;
        let end_offsets = assigned.end_offsets();
        let remaining = match &until {
            ReadUntil::End => Some(assigned.remaining_before(&end_offsets)),
            ReadUntil::Offsets(ends) => Some(assigned.remaining_before(ends)),
            ReadUntil::Never => None,
        };
        let (tx, batches) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
        std::thread::Builder::new()
            .name(format!("read {topic}"))
            .spawn(move || {
                poll_batches(&consumer, remaining, max.max(1), headers, &tx);
                // The caller learns it has everything now, not after the consumer's close
                // (which waits for its fetch in flight: a tenth of a second).
                drop(tx);
                shut_down_consumer(consumer);
            })
            .map_err(|e| LogError::Unavailable(format!("cannot start a reader thread: {e}")))?;
        Ok(Self { batches, end_offsets })
    }

    /// The offset one past the last record of every partition, as of when the reader was
    /// opened.
    pub fn end_offsets(&self) -> &BTreeMap<i32, i64> {
        &self.end_offsets
    }

    /// The next batch (never empty), or `None` once every partition has reached where the
    /// reader stops.
    pub async fn next(&mut self) -> Option<Result<Vec<LogRecord>, LogError>> {
        self.batches.recv().await
    }
}

/// The reader thread: polls until every partition in `remaining` is read to its end (for ever
/// when `None`), or the receiver is gone.
fn poll_batches(
    consumer: &BaseConsumer,
    mut remaining: Option<BTreeMap<i32, i64>>,
    max: usize,
    headers: RecordHeaders,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<LogRecord>, LogError>>,
) {
    let mut topic = None;
    loop {
        if remaining.as_ref().is_some_and(BTreeMap::is_empty) || tx.is_closed() {
            return;
        }
        let mut batch = Vec::with_capacity(max);
        while batch.len() < max {
            // Wait for the batch's first record only; then take what has arrived.
            let wait = if batch.is_empty() { IDLE_POSITION_CHECK } else { Duration::ZERO };
            let record = match consumer.poll(wait) {
                None => break,
                Some(Err(error)) => {
                    if !batch.is_empty() {
                        let _ = tx.blocking_send(Ok(batch));
                    }
                    let _ = tx.blocking_send(Err(classify(error)));
                    return;
                }
                Some(Ok(message)) => to_record_with(&message, headers, &mut topic),
            };
            match remaining.as_mut() {
                Some(remaining) => {
                    if let Some(record) = within(remaining, record) {
                        batch.push(record);
                    }
                    if remaining.is_empty() {
                        break;
                    }
                }
                None => batch.push(record),
            }
        }
        if batch.is_empty() {
            // Nothing arrived: the end may lie past records never delivered (transaction
            // markers, aborted records), which only the position tells.
            if let Some(remaining) = remaining.as_mut() {
                forget_reached(consumer, remaining);
            }
            continue;
        }
        if tx.blocking_send(Ok(batch)).is_err() {
            return;
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
    /// Where to start each assigned partition instead of the committed offset.
    starts: Option<Arc<StartOffsets>>,
}

/// Where a member starts reading each partition it is assigned, instead of the group's
/// committed offset: for projectors, the read store's own progress. A store that lost its
/// last writes (an embedded store's unsynced tail after a power loss) then gets them again,
/// where the committed offsets, already past them, would leave holes for ever. A partition
/// without an entry starts at its beginning (the store has applied nothing of it).
#[derive(Debug, Default)]
pub struct StartOffsets {
    offsets: Mutex<HashMap<(String, i32), i64>>,
}

impl StartOffsets {
    /// Records that `partition` of `topic` is applied below `next_offset`.
    pub fn set(&self, topic: &str, partition: i32, next_offset: i64) {
        let mut offsets = self.offsets.lock().expect("start offsets lock");
        let entry = offsets.entry((topic.to_string(), partition)).or_insert(next_offset);
        *entry = (*entry).max(next_offset);
    }

    /// Where `partition` of `topic` starts.
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.lock().expect("start offsets lock").get(&(topic.to_string(), partition)).copied()
    }
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
    // librdkafka's default handling (eager protocol: assign what is given, drop everything on
    // revocation), with the start offsets set first when the member has its own.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        self.rebalances.fetch_add(1, AtomicOrdering::Relaxed);
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Some(starts) = &self.starts {
                    let assigned: Vec<(String, i32)> =
                        tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
                    for (topic, partition) in assigned {
                        let offset = starts.get(&topic, partition).map_or(Offset::Beginning, Offset::Offset);
                        if let Err(error) = tpl.set_partition_offset(&topic, partition, offset) {
                            tracing::warn!(message = "Failed to set a start offset.", %topic, partition, %error);
                        }
                    }
                }
                consumer.assign(tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => consumer.unassign(),
            other => {
                tracing::warn!(message = "Rebalance failed; dropping the assignment.", error = ?other);
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            tracing::warn!(message = "Failed to apply a rebalance.", %error);
        }
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
        Self::join(config, group, topics, true, None)
    }

    /// Like [`GroupConsumer::subscribe`], but every assigned partition starts where `starts`
    /// says (its beginning when it says nothing), whatever offset the group committed.
    pub fn subscribe_from(config: &LogConfig, group: &str, topic: &str, starts: Arc<StartOffsets>) -> Result<Self, LogError> {
        Self::join(config, group, &[topic], true, Some(starts))
    }

    /// Joins `group` as a member that never commits offsets itself: they are committed in the
    /// transactions that append what the records caused ([`super::Transaction::consume`]).
    pub fn subscribe_transactional(config: &LogConfig, group: &str, topics: &[&str]) -> Result<Self, LogError> {
        Self::join(config, group, topics, false, None)
    }

    fn join(
        config: &LogConfig,
        group: &str,
        topics: &[&str],
        auto_commit: bool,
        starts: Option<Arc<StartOffsets>>,
    ) -> Result<Self, LogError> {
        let consumer: StreamConsumer<WatermarkContext> = config
            .consumer_config()
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
            .create_with_context(WatermarkContext { starts, ..WatermarkContext::default() })?;
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

    /// The partitions of `topic`, from the broker's metadata.
    pub fn partitions_of(&self, topic: &str) -> Result<Vec<i32>, LogError> {
        partitions_of(self.consumer(), topic)
    }

    /// The offset this member reads next in `partition` of `topic` (past transaction markers
    /// and aborted records it skipped); `None` before it has read there.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        let positions = self.consumer().position().ok()?;
        match positions.find_partition(topic, partition)?.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
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

/// Asks the broker where partitions end, for readers that must know how far the log went as of
/// a request (a read that missed waits for the projection to get there), and where they
/// reached a point in time, for reads of a time window.
pub struct EndOffsets {
    consumer: Arc<rdkafka::consumer::BaseConsumer>,
    config: LogConfig,
    partitions: Mutex<HashMap<String, i32>>,
}

impl EndOffsets {
    /// A client of the log; it connects lazily.
    pub fn new(config: &LogConfig) -> Result<Self, LogError> {
        // No group: metadata, watermarks and time lookups need none, and rust-rdkafka closes
        // a consumer with a group by polling it in steps of a tenth of a second, which every
        // tool paid on its way out.
        let consumer = config.client_config().set("isolation.level", "read_committed").create()?;
        Ok(Self { consumer: Arc::new(consumer), config: config.clone(), partitions: Mutex::default() })
    }

    /// The deployment's full name of topic `name` (`<namespace>.<name>`).
    pub fn topic(&self, name: &str) -> String {
        self.config.topic(name)
    }

    /// How many partitions `topic` has (asked once).
    pub async fn partition_count(&self, topic: &str) -> Result<i32, LogError> {
        if let Some(count) = self.partitions.lock().expect("partitions lock").get(topic) {
            return Ok(*count);
        }
        let consumer = self.consumer.clone();
        let name = topic.to_string();
        let count = tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(Some(&name), METADATA_TIMEOUT).map_err(classify)?;
            let count = metadata.topics().iter().filter(|t| t.name() == name).map(|t| t.partitions().len()).sum::<usize>();
            if count == 0 {
                return Err(LogError::Unavailable(format!("topic {name} has no partitions")));
            }
            Ok(count as i32)
        })
        .await
        .map_err(|e| LogError::Unavailable(e.to_string()))??;
        self.partitions.lock().expect("partitions lock").insert(topic.to_string(), count);
        Ok(count)
    }

    /// For every partition of `topic`, the offset of its first record written at or after
    /// `time_ms` (ms since the epoch), or its end when it has none (the broker's past-the-end
    /// answer): the offsets where a window starting or ending at that time begins or stops.
    pub async fn offsets_at_time(&self, topic: &str, time_ms: i64) -> Result<BTreeMap<i32, i64>, LogError> {
        let count = self.partition_count(topic).await?;
        let consumer = self.consumer.clone();
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let mut query = TopicPartitionList::new();
            for partition in 0..count {
                query.add_partition_offset(&name, partition, Offset::Offset(time_ms))?;
            }
            let answer = consumer.offsets_for_times(query, METADATA_TIMEOUT).map_err(classify)?;
            let mut offsets = BTreeMap::new();
            for element in answer.elements() {
                let offset = match element.offset() {
                    Offset::Offset(offset) => offset,
                    // No record at or after the time: the window starts (or stops) at the end.
                    _ => consumer.fetch_watermarks(&name, element.partition(), METADATA_TIMEOUT).map_err(classify)?.1,
                };
                offsets.insert(element.partition(), offset);
            }
            Ok(offsets)
        })
        .await
        .map_err(|e| LogError::Unavailable(e.to_string()))?
    }

    /// The offset after the last committed record of `partition` of `topic`, now (its last
    /// stable offset: what a `read_committed` projector can reach).
    pub async fn end_of(&self, topic: &str, partition: i32) -> Result<i64, LogError> {
        let consumer = self.consumer.clone();
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || consumer.fetch_watermarks(&name, partition, METADATA_TIMEOUT).map(|(_, high)| high))
            .await
            .map_err(|e| LogError::Unavailable(e.to_string()))?
            .map_err(classify)
    }
}
