//! Projectors: consumer groups that fold a topic into a read model, with version-guarded writes,
//! each partition resumed from the progress the store itself recorded (not the committed
//! offset, which may cover writes the store lost); and the rebuild that replays the log into a
//! fresh namespace, then switches reads over.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use tracing::Instrument;

use crate::metrics::ProjectionEvents;
use crate::log::{GroupConsumer, LogConfig, LogError, LogRecord, ReadUntil, RecordHeaders, StartOffsets, TopicBatches, TopicReader};
use crate::store::{CellKey, ReadStore, StoreError};

/// Why a record could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The record can never be applied (undecodable): it is skipped with a warning.
    #[error("Poison record: {0}")]
    Poison(String),
    /// A dependency is down: the record is retried.
    #[error("Transient failure: {0}")]
    Transient(String),
}

impl From<StoreError> for ProjectionError {
    fn from(error: StoreError) -> Self {
        ProjectionError::Transient(error.to_string())
    }
}

/// What applying a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The read model changed.
    Changed,
    /// The arbiter rule rejected the event (duplicate, stale or gapped): nothing changed.
    Ignored,
}

/// A read model folded from one topic.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Name of the read model, as `ticketing rebuild <name>` takes it.
    fn name(&self) -> &'static str;

    /// Full name of the topic it folds.
    fn topic(&self) -> &str;

    /// Applies one record into the read model held in `namespace`.
    async fn apply(
        &self,
        store: &dyn ReadStore,
        namespace: &str,
        record: &LogRecord,
    ) -> Result<Applied, ProjectionError>;
}

/// Decodes a record for a projection: a registry outage is transient, anything else poison.
pub async fn decode_record<E: Send + 'static>(
    codec: &dyn crate::codec::EventCodec<E>,
    record: &LogRecord,
) -> Result<crate::aggregate::Envelope<E>, ProjectionError> {
    let bytes = record.payload.as_deref().ok_or_else(|| ProjectionError::Poison("no value".into()))?;
    codec.decode(bytes).await.map_err(|e| match e {
        crate::codec::CodecError::RegistryUnavailable(reason) => ProjectionError::Transient(reason),
        other => ProjectionError::Poison(other.to_string()),
    })
}

/// Reads a JSON row stored at `(table, partition)` with an empty clustering key.
pub async fn read_row<T: serde::de::DeserializeOwned>(
    store: &dyn ReadStore,
    namespace: &str,
    table: &str,
    partition: &str,
) -> Result<Option<T>, StoreError> {
    let key = CellKey { namespace, table, partition, clustering: "" };
    match store.get(key).await? {
        Some(cell) => serde_json::from_slice(&cell.value)
            .map(Some)
            .map_err(|e| StoreError::Engine(format!("corrupt row {table}/{partition}: {e}"))),
        None => Ok(None),
    }
}

const CATALOG_NAMESPACE: &str = "catalog";
/// The table of a namespace where its progress through the log is kept.
pub const PROGRESS_TABLE: &str = "progress";
const SNAPSHOTS_TABLE: &str = "snapshots";
const AUDITS_TABLE: &str = "audits";

/// A read model rebuilt as of a time into a namespace of its own.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The read model (`tickets`).
    pub read_model: String,
    /// The time it shows, in ms since the epoch: every event written before it.
    pub as_of: i64,
}

/// What the latest audit of a read model found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditOutcome {
    /// The audited read model.
    pub read_model: String,
    /// The live namespace it compared.
    pub namespace: String,
    /// When it ended, ms since the epoch.
    pub finished_at: i64,
    /// Rows compared.
    pub rows: u64,
    /// Rows that differ, are missing or should not be there.
    pub differences: u64,
}

/// Which namespace serves each read model, and how far each namespace has read its topic.
#[derive(Clone)]
pub struct ReadModels {
    store: Arc<dyn ReadStore>,
    cache: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    progressed: Arc<tokio::sync::Notify>,
}

/// How long a cached namespace pointer is trusted.
const POINTER_TTL: Duration = Duration::from_millis(500);

impl ReadModels {
    /// The catalog of read models kept in `store`.
    pub fn new(store: Arc<dyn ReadStore>) -> Self {
        Self { store, cache: Arc::default(), progressed: Arc::default() }
    }

    /// The store behind the catalog.
    pub fn store(&self) -> &Arc<dyn ReadStore> {
        &self.store
    }

    /// The namespace that currently serves `read_model` (`<read_model>_v1` until a rebuild).
    pub async fn current(&self, read_model: &str) -> Result<String, StoreError> {
        if let Some((ns, at)) = self.cache.lock().expect("cache lock").get(read_model)
            && at.elapsed() < POINTER_TTL
        {
            return Ok(ns.clone());
        }
        let key = CellKey { namespace: CATALOG_NAMESPACE, table: "current", partition: read_model, clustering: "" };
        let ns = match self.store.get(key).await? {
            Some(cell) => String::from_utf8_lossy(&cell.value).into_owned(),
            None => format!("{read_model}_v1"),
        };
        self.cache.lock().expect("cache lock").insert(read_model.to_string(), (ns.clone(), Instant::now()));
        Ok(ns)
    }

    /// Points reads of `read_model` at `namespace`.
    pub async fn switch(&self, read_model: &str, namespace: &str) -> Result<(), StoreError> {
        let key = CellKey { namespace: CATALOG_NAMESPACE, table: "current", partition: read_model, clustering: "" };
        let now = chrono::Utc::now().timestamp_micros();
        self.store.put(key, namespace.as_bytes(), now).await?;
        self.cache.lock().expect("cache lock").remove(read_model);
        Ok(())
    }

    /// Records that `namespace` holds `read_model` as of `as_of` (ms since the epoch), so the
    /// query API may serve it, read-only, to requests that name it.
    pub async fn register_snapshot(&self, namespace: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        let key = CellKey { namespace: CATALOG_NAMESPACE, table: SNAPSHOTS_TABLE, partition: namespace, clustering: "" };
        let value = serde_json::to_vec(snapshot).expect("a snapshot serializes");
        self.store.put(key, &value, chrono::Utc::now().timestamp_micros()).await
    }

    /// The snapshot a namespace holds, if it was registered as one.
    pub async fn snapshot(&self, namespace: &str) -> Result<Option<Snapshot>, StoreError> {
        if crate::store::validate_name(namespace).is_err() {
            return Ok(None);
        }
        let key = CellKey { namespace: CATALOG_NAMESPACE, table: SNAPSHOTS_TABLE, partition: namespace, clustering: "" };
        Ok(self.store.get(key).await?.and_then(|cell| serde_json::from_slice(&cell.value).ok()))
    }

    /// Keeps the outcome of the latest audit of a read model.
    pub async fn record_audit(&self, audit: &AuditOutcome) -> Result<(), StoreError> {
        let key = CellKey { namespace: CATALOG_NAMESPACE, table: AUDITS_TABLE, partition: AUDITS_TABLE, clustering: &audit.read_model };
        let value = serde_json::to_vec(audit).expect("an audit serializes");
        self.store.put(key, &value, chrono::Utc::now().timestamp_micros()).await
    }

    /// The latest audit of each read model that was ever audited.
    pub async fn audits(&self) -> Result<Vec<AuditOutcome>, StoreError> {
        let page = self.store.scan(CATALOG_NAMESPACE, AUDITS_TABLE, AUDITS_TABLE, None, 100).await?;
        Ok(page.cells.iter().filter_map(|cell| serde_json::from_slice(&cell.value).ok()).collect())
    }

    /// Records that `namespace` has applied every record of `partition` below `next_offset`.
    pub async fn record_progress(&self, namespace: &str, partition: i32, next_offset: i64) -> Result<(), StoreError> {
        let partition = partition.to_string();
        let key = CellKey { namespace, table: PROGRESS_TABLE, partition: &partition, clustering: "" };
        self.store.put(key, next_offset.to_string().as_bytes(), next_offset).await?;
        self.progressed.notify_waiters();
        Ok(())
    }

    /// Woken whenever a projector of this process records progress (readers waiting for a
    /// write look again then; progress made by other processes is only seen by looking).
    pub fn progress_notifier(&self) -> Arc<tokio::sync::Notify> {
        self.progressed.clone()
    }

    /// The offset up to which `namespace` has applied `partition` (0 when nothing).
    pub async fn progress(&self, namespace: &str, partition: i32) -> Result<i64, StoreError> {
        let partition = partition.to_string();
        let key = CellKey { namespace, table: PROGRESS_TABLE, partition: &partition, clustering: "" };
        Ok(self
            .store
            .get(key)
            .await?
            .and_then(|c| String::from_utf8_lossy(&c.value).parse().ok())
            .unwrap_or(0))
    }
}

/// Health of a running projector, for readiness and lag.
#[derive(Debug, Default)]
pub struct ProjectorHealth {
    assigned: Mutex<Vec<i32>>,
    lag: Mutex<BTreeMap<i32, i64>>,
}

impl ProjectorHealth {
    /// True once the group has assigned this member at least one partition.
    pub fn is_assigned(&self) -> bool {
        !self.assigned.lock().expect("health lock").is_empty()
    }

    /// True when every assigned partition has been measured and together they are at most
    /// `max_lag` records behind. A partition not fetched yet has no known end, so a projector
    /// that has just joined is not taken as caught up.
    pub fn caught_up(&self, max_lag: i64) -> bool {
        let assigned = self.assigned.lock().expect("health lock");
        let lag = self.lag.lock().expect("health lock");
        assigned.iter().all(|p| lag.contains_key(p)) && lag.values().sum::<i64>() <= max_lag
    }
}

async fn apply_with_retry(
    projection: &dyn Projection,
    events: &ProjectionEvents,
    store: &dyn ReadStore,
    namespace: &str,
    record: &LogRecord,
) -> Option<Applied> {
    loop {
        match projection.apply(store, namespace, record).await {
            Ok(applied) => {
                let counter = if applied == Applied::Changed { &events.applied } else { &events.ignored };
                counter.inc();
                return Some(applied);
            }
            Err(ProjectionError::Poison(reason)) => {
                events.poison.inc();
                tracing::warn!(
                    message = "Skipped a poison record.",
                    projection = projection.name(),
                    partition = record.position.partition,
                    offset = record.position.offset,
                    %reason,
                );
                return None;
            }
            Err(ProjectionError::Transient(reason)) => {
                tracing::warn!(message = "Failed to apply a record; retrying.", projection = projection.name(), %reason);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// How many records a partition's worker may have waiting before the consumer waits for it.
const PARTITION_QUEUE: usize = 256;

/// Runs a projector as a member of `group` until `shutdown` turns true.
///
/// Records of one partition are applied in order by that partition's worker; partitions are
/// applied concurrently (order matters only within an aggregate, and an aggregate lives in one
/// partition), so a store with a round trip per write is not bound by one write at a time.
pub async fn run_projector(
    config: LogConfig,
    projection: Arc<dyn Projection>,
    read_models: ReadModels,
    group: String,
    health: Arc<ProjectorHealth>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LogError> {
    // Each partition resumes where the store says it is, not at the committed offset: the
    // store may have lost writes the offsets already cover (see `StartOffsets`).
    let starts = Arc::new(StartOffsets::default());
    let consumer = Arc::new(GroupConsumer::subscribe_from(&config, &group, projection.topic(), starts.clone())?);
    load_start_offsets(&consumer, projection.as_ref(), &read_models, &starts, &shutdown).await;
    let mut workers: HashMap<i32, PartitionWorker> = HashMap::new();
    let mut last_health = Instant::now() - Duration::from_secs(10);
    loop {
        if last_health.elapsed() > Duration::from_secs(1) {
            last_health = Instant::now();
            record_skipped_ends(&consumer, projection.as_ref(), &read_models, &starts, &mut workers).await;
            update_health(&consumer, &read_models, projection.as_ref(), &health).await;
        }
        let record = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
            record = consumer.next() => record,
        };
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(message = "Failed to read the log.", projection = projection.name(), %error);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let partition = record.position.partition;
        let next = record.position.offset + 1;
        let worker = workers.entry(partition).or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(PARTITION_QUEUE);
            let applied = Arc::new(AtomicI64::new(0));
            let handle = tokio::spawn(project_partition(
                rx,
                config.clone(),
                projection.clone(),
                read_models.clone(),
                consumer.clone(),
                starts.clone(),
                applied.clone(),
            ));
            PartitionWorker { queue: tx, handle, applied, sent: 0 }
        });
        worker.sent = next;
        if worker.queue.send(record).await.is_err() {
            tracing::error!(message = "A projector's partition worker stopped.", projection = projection.name(), partition);
            workers.remove(&partition);
        }
    }
    // Let the workers finish what they hold, so its offsets are stored before the commit.
    for (_, worker) in workers.drain() {
        drop(worker.queue);
        let _ = tokio::time::timeout(Duration::from_secs(10), worker.handle).await;
    }
    if let Err(error) = consumer.commit() {
        tracing::warn!(message = "Failed to commit projector offsets on shutdown.", %error);
    }
    Ok(())
}

/// Applies one partition's records in order: the write, then the progress recorded with it,
/// then the offset stored for the next commit.
///
/// The first record a worker writes into a namespace (at start, or after a rebuild switched
/// reads to a new one) is preceded by what that namespace lacks of the partition, read from the
/// log: a rebuild's namespace is still being filled behind the live head, and an event whose
/// predecessor is not there yet would be judged a gap and lost.
async fn project_partition(
    mut records: tokio::sync::mpsc::Receiver<LogRecord>,
    config: LogConfig,
    projection: Arc<dyn Projection>,
    read_models: ReadModels,
    consumer: Arc<GroupConsumer>,
    starts: Arc<StartOffsets>,
    applied: Arc<AtomicI64>,
) {
    let mut written: Option<String> = None;
    let events = crate::metrics::METRICS.projection_events(projection.name());
    while let Some(record) = records.recv().await {
        let namespace = loop {
            match read_models.current(projection.name()).await {
                Ok(ns) => break ns,
                Err(error) => {
                    tracing::warn!(message = "Failed to read the catalog; retrying.", %error);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let partition = record.position.partition;
        if written.as_deref() != Some(namespace.as_str()) {
            while let Err(error) = fill_behind(&config, projection.as_ref(), &events, &read_models, &namespace, partition, record.position.offset).await {
                tracing::warn!(message = "Failed to fill a namespace behind the live head; retrying.", %error);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            written = Some(namespace.clone());
        }
        let span = tracing::info_span!(
            "project",
            projection = projection.name(),
            partition,
            offset = record.position.offset,
        );
        crate::telemetry::continue_trace(&span, &record.headers);
        apply_with_retry(projection.as_ref(), &events, read_models.store().as_ref(), &namespace, &record)
            .instrument(span)
            .await;
        while let Err(error) = read_models.record_progress(&namespace, partition, record.position.offset + 1).await {
            tracing::warn!(message = "Failed to record progress; retrying.", %error);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        starts.set(projection.topic(), partition, record.position.offset + 1);
        applied.fetch_max(record.position.offset + 1, AtomicOrdering::Relaxed);
        // After a rebalance took the partition away this fails; the new owner replays it.
        if let Err(error) = consumer.store_offset(&record) {
            tracing::warn!(message = "Failed to store a projector offset.", %error);
        }
    }
}

/// Applies into `namespace` the records of `partition` from its recorded progress up to
/// `until` (exclusive), when it is behind.
async fn fill_behind(
    config: &LogConfig,
    projection: &dyn Projection,
    events: &ProjectionEvents,
    read_models: &ReadModels,
    namespace: &str,
    partition: i32,
    until: i64,
) -> anyhow::Result<()> {
    let from = read_models.progress(namespace, partition).await?;
    if from >= until {
        return Ok(());
    }
    tracing::info!(message = "Filling a namespace behind the live head.", projection = projection.name(), namespace, partition, from, until);
    let reader = TopicReader::partition_from(config, projection.topic(), partition, from)?;
    let mut remaining = reader.remaining_before(&BTreeMap::from([(partition, until)]));
    while let Some(record) = reader.next_within(&mut remaining).await? {
        apply_with_retry(projection, events, read_models.store().as_ref(), namespace, &record).await;
        read_models.record_progress(namespace, partition, record.position.offset + 1).await?;
    }
    Ok(())
}

/// One partition's worker, as the projector's loop sees it.
struct PartitionWorker {
    queue: tokio::sync::mpsc::Sender<LogRecord>,
    handle: tokio::task::JoinHandle<()>,
    /// The offset after the last record the worker applied.
    applied: Arc<AtomicI64>,
    /// The offset after the last record handed to the worker.
    sent: i64,
}

/// Records as progress, for partitions whose worker has applied everything it was handed,
/// the consumer's position when it lies past the last record: what is between is never
/// delivered (transaction markers, aborted records), and a reader waiting for the log's end
/// must see the projection get there.
async fn record_skipped_ends(
    consumer: &GroupConsumer,
    projection: &dyn Projection,
    read_models: &ReadModels,
    starts: &StartOffsets,
    workers: &mut HashMap<i32, PartitionWorker>,
) {
    let Ok(namespace) = read_models.current(projection.name()).await else { return };
    for (partition, worker) in workers.iter_mut() {
        if worker.applied.load(AtomicOrdering::Relaxed) < worker.sent {
            continue;
        }
        let Some(position) = consumer.position(projection.topic(), *partition) else { continue };
        if position > worker.sent && read_models.record_progress(&namespace, *partition, position).await.is_ok() {
            starts.set(projection.topic(), *partition, position);
            worker.applied.fetch_max(position, AtomicOrdering::Relaxed);
            worker.sent = position;
        }
    }
}

/// Reads the store's progress on every partition of the projection's topic before the first
/// poll (which runs the first assignment), retrying while the log or the store is down.
async fn load_start_offsets(
    consumer: &GroupConsumer,
    projection: &dyn Projection,
    read_models: &ReadModels,
    starts: &StartOffsets,
    shutdown: &watch::Receiver<bool>,
) {
    loop {
        let loaded = async {
            let namespace = read_models.current(projection.name()).await.map_err(|e| e.to_string())?;
            let partitions = consumer.partitions_of(projection.topic()).map_err(|e| e.to_string())?;
            for partition in partitions {
                let next = read_models.progress(&namespace, partition).await.map_err(|e| e.to_string())?;
                if next > 0 {
                    starts.set(projection.topic(), partition, next);
                }
            }
            Ok::<(), String>(())
        };
        match loaded.await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(message = "Failed to read the projection's progress; retrying.", projection = projection.name(), %error);
                if *shutdown.borrow() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn update_health(
    consumer: &GroupConsumer,
    read_models: &ReadModels,
    projection: &dyn Projection,
    health: &ProjectorHealth,
) {
    let assigned: Vec<i32> = consumer.assigned_partitions().into_iter().map(|(_, p)| p).collect();
    let mut lag = BTreeMap::new();
    if let Ok(namespace) = read_models.current(projection.name()).await {
        for partition in &assigned {
            if let (Some(end), Ok(done)) = (
                consumer.end_offset(projection.topic(), *partition),
                read_models.progress(&namespace, *partition).await,
            ) {
                let behind = (end - done).max(0);
                crate::metrics::METRICS.projector_lag(projection.name(), *partition, behind);
                lag.insert(*partition, behind);
            }
        }
    }
    *health.assigned.lock().expect("health lock") = assigned;
    *health.lag.lock().expect("health lock") = lag;
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    /// The namespace that now serves the read model.
    pub namespace: String,
    /// Records replayed.
    pub records: u64,
    /// Records that changed the read model.
    pub changed: u64,
}

/// How a replay writes into its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayWrites {
    /// As `Behind`, into a namespace made for this replay that holds nothing yet (a fresh
    /// rebuild's, an audit's first round): a cell the replay has not written is absent, and
    /// the store is not asked.
    Fresh,
    /// The namespace is the replay's alone (a scratch or snapshot namespace):
    /// writes are held in a [`crate::store::WriteBehind`] overlay and each cell's last state
    /// is written when it holds many and at the end, before the progress.
    Behind,
    /// Live projectors write to the namespace too (a rebuild's catch-up after the switch):
    /// each write goes to the store at once, so no reader or projector meets a row older than
    /// the progress recorded beside it.
    Through,
}

/// Replays the records of the projection's topic from `from` (per partition; 0 when absent)
/// up to `until` (exclusive; the log's end now when `None`) into `namespace`, records the
/// namespace's progress, and returns where each partition got to. `on_progress(done, total)`
/// is called as it goes.
#[allow(clippy::too_many_arguments)]
pub async fn replay_into(
    config: &LogConfig,
    projection: &Arc<dyn Projection>,
    read_models: &ReadModels,
    namespace: &str,
    writes: ReplayWrites,
    from: &BTreeMap<i32, i64>,
    until: Option<&BTreeMap<i32, i64>>,
    report: &mut RebuildReport,
    on_progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<BTreeMap<i32, i64>> {
    use anyhow::Context;
    // Most events rewrite a row an earlier one wrote: the overlay keeps them in memory and
    // writes each cell's last state when it holds many, and at the end.
    let overlay = match writes {
        ReplayWrites::Fresh => Some(Arc::new(crate::store::WriteBehind::over_empty(read_models.store().clone()))),
        ReplayWrites::Behind => Some(Arc::new(crate::store::WriteBehind::new(read_models.store().clone()))),
        ReplayWrites::Through => None,
    };
    let store: Arc<dyn ReadStore> = match &overlay {
        Some(overlay) => overlay.clone(),
        None => read_models.store().clone(),
    };
    let read_until = match until {
        Some(until) => ReadUntil::Offsets(until.clone()),
        None => ReadUntil::End,
    };
    // Projections fold payloads; a replay carries no trace to continue.
    let mut batches = TopicBatches::open(config, projection.topic(), from, None, read_until, REPLAY_BATCH, RecordHeaders::Dropped)
        .context("Failed to open the topic for replay")?;
    let ends = until.cloned().unwrap_or_else(|| batches.end_offsets().clone());
    let mut next_offsets = from.clone();
    let total: u64 = ends
        .iter()
        .map(|(p, end)| (end - from.get(p).copied().unwrap_or(0)).max(0) as u64)
        .sum::<u64>()
        + report.records;
    let mut flushed_at = report.records;
    // Each partition applies in order on a task of its own, as the live projector's workers
    // do, while the next batches are read and the overlay flushes (which keeps what is
    // written meanwhile for the next flush).
    let mut workers: BTreeMap<i32, ReplayWorker> = BTreeMap::new();
    let mut flushing: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        let count = batch.len() as u64;
        let mut by_partition: BTreeMap<i32, Vec<LogRecord>> = BTreeMap::new();
        for record in batch {
            next_offsets.insert(record.position.partition, record.position.offset + 1);
            by_partition.entry(record.position.partition).or_default().push(record);
        }
        for (partition, records) in by_partition {
            let worker = workers
                .entry(partition)
                .or_insert_with(|| ReplayWorker::start(projection.clone(), store.clone(), namespace.to_string()));
            worker.apply(records).await?;
        }
        report.records += count;
        on_progress(report.records, total);
        if let Some(overlay) = &overlay
            && report.records - flushed_at >= REPLAY_FLUSH_RECORDS
        {
            if let Some(previous) = flushing.take() {
                previous.await?;
            }
            let overlay = overlay.clone();
            flushing = Some(tokio::spawn(async move { flush_with_retry(&overlay).await }));
            flushed_at = report.records;
        }
    }
    for worker in std::mem::take(&mut workers).into_values() {
        report.changed += worker.finish().await?;
    }
    if let Some(previous) = flushing.take() {
        previous.await?;
    }
    if let Some(overlay) = &overlay {
        flush_with_retry(overlay).await;
    }
    // Past what a read_committed reader never sees (transaction markers): the namespace has
    // everything below each end.
    for (partition, end) in &ends {
        let next = next_offsets.entry(*partition).or_insert(0);
        *next = (*next).max(*end);
    }
    for (partition, next) in &next_offsets {
        read_models.record_progress(namespace, *partition, *next).await?;
    }
    on_progress(report.records, total);
    Ok(next_offsets)
}

/// Most records a replay reads at a time.
const REPLAY_BATCH: usize = 4096;

/// One partition's part of a replay: applies its records in order on a task of its own.
struct ReplayWorker {
    work: tokio::sync::mpsc::Sender<Vec<LogRecord>>,
    task: tokio::task::JoinHandle<u64>,
}

impl ReplayWorker {
    fn start(projection: Arc<dyn Projection>, store: Arc<dyn ReadStore>, namespace: String) -> Self {
        // A few batches queued per partition keep it busy while the reader goes on.
        let (work, mut queued) = tokio::sync::mpsc::channel::<Vec<LogRecord>>(4);
        let events = crate::metrics::METRICS.projection_events(projection.name());
        let task = tokio::spawn(async move {
            let mut changed = 0;
            while let Some(records) = queued.recv().await {
                for record in &records {
                    if apply_with_retry(projection.as_ref(), &events, store.as_ref(), &namespace, record).await == Some(Applied::Changed) {
                        changed += 1;
                    }
                }
            }
            changed
        });
        Self { work, task }
    }

    async fn apply(&self, records: Vec<LogRecord>) -> anyhow::Result<()> {
        self.work.send(records).await.map_err(|_| anyhow::anyhow!("A replay task failed"))
    }

    /// Waits for everything sent to be applied; how many records changed a row.
    async fn finish(self) -> anyhow::Result<u64> {
        drop(self.work);
        Ok(self.task.await?)
    }
}

/// Records a replay applies to its overlay before it writes the rows to the store (which
/// bounds the overlay to the cells that many records touch).
const REPLAY_FLUSH_RECORDS: u64 = 200_000;

/// Writes what a replay's overlay holds, retrying while the store is unavailable, as applying
/// a record does.
async fn flush_with_retry(store: &crate::store::WriteBehind) {
    while let Err(error) = store.flush().await {
        tracing::warn!(message = "Failed to write a replay's rows; retrying.", %error);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Replays the projection's topic from offset 0 into a fresh namespace, switches reads to it,
/// then replays what arrived meanwhile. `on_progress(done, total)` is called as it goes.
pub async fn rebuild(
    config: &LogConfig,
    projection: &Arc<dyn Projection>,
    read_models: &ReadModels,
    mut on_progress: impl FnMut(u64, u64),
) -> anyhow::Result<RebuildReport> {
    let namespace = format!("{}_r{}", projection.name(), chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
    let mut report = RebuildReport { namespace: namespace.clone(), records: 0, changed: 0 };
    let reached = replay_into(
        config,
        projection,
        read_models,
        &namespace,
        // Named for this rebuild just now: nothing is in it yet.
        ReplayWrites::Fresh,
        &BTreeMap::new(),
        None,
        &mut report,
        &mut on_progress,
    )
    .await?;
    read_models.switch(projection.name(), &namespace).await?;
    // Let live projectors pick up the new pointer before the catch-up pass.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = ReplayWrites::Through;
    replay_into(config, projection, read_models, &namespace, writes, &reached, None, &mut report, &mut on_progress).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(assigned: &[i32], lag: &[(i32, i64)]) -> ProjectorHealth {
        ProjectorHealth { assigned: Mutex::new(assigned.to_vec()), lag: Mutex::new(lag.iter().copied().collect()) }
    }

    #[test]
    fn a_projector_is_caught_up_only_when_every_assigned_partition_is_measured_and_close() {
        assert!(!health(&[0, 1], &[(0, 0)]).caught_up(10), "partition 1 not fetched yet");
        assert!(health(&[0, 1], &[(0, 0), (1, 5)]).caught_up(10));
        assert!(!health(&[0, 1], &[(0, 6), (1, 5)]).caught_up(10), "11 records behind in all");
        assert!(health(&[], &[]).caught_up(0), "nothing assigned, nothing behind");
    }
}
