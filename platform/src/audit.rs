//! Audits: a read model replayed from the log into a scratch namespace, compared row by row
//! with the live namespace that serves it.
//!
//! The live namespace may move on while the audit runs. The replay goes exactly as far as the
//! live namespace's recorded progress; when rows differ and the live namespace has progressed
//! meanwhile, the replay catches up and compares again (a few rounds), so only differences
//! that stay are reported.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::log::{EndOffsets, LogConfig};
use crate::projection::{AuditOutcome, PROGRESS_TABLE, Projection, ReadModels, RebuildReport, ReplayWrites, replay_into};
use crate::store::{CellKey, ReadStore, StoreError};

/// How many times the replay catches up with a live namespace that moved on.
const ROUNDS: usize = 3;

/// Where a row lives in a namespace: table, partition key, clustering key.
pub type RowKey = (String, String, String);

/// One row that differs between the live namespace and the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDifference {
    /// Where the row lives.
    pub key: RowKey,
    /// The live row (`None`: missing from the live namespace).
    pub live: Option<String>,
    /// The replayed row (`None`: the live namespace has a row the log does not explain).
    pub replayed: Option<String>,
}

/// What an audit found.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// The audited read model.
    pub read_model: String,
    /// The live namespace.
    pub live: String,
    /// The scratch namespace the log was replayed into.
    pub scratch: String,
    /// Records replayed.
    pub records: u64,
    /// Rows of the live namespace compared.
    pub live_rows: u64,
    /// Rows of the replay.
    pub replayed_rows: u64,
    /// How many rows differ (changed, missing or unexplained).
    pub difference_count: u64,
    /// The first differences, in the store's order.
    pub differences: Vec<RowDifference>,
}

/// Replays `projection` into a scratch namespace up to the live namespace's progress, compares
/// the two, records the outcome in the catalog and drops the scratch namespace unless
/// `keep_scratch`. `on_progress(done, total)` follows the replay.
pub async fn audit(
    config: &LogConfig,
    projection: &Arc<dyn Projection>,
    read_models: &ReadModels,
    show: usize,
    keep_scratch: bool,
    on_progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<AuditReport> {
    let read_model = projection.name();
    let live = read_models.current(read_model).await?;
    let scratch = format!("{read_model}_audit{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
    let partitions = EndOffsets::new(config)?.partition_count(projection.topic()).await?;
    let store = read_models.store().clone();
    let mut replay = RebuildReport { namespace: scratch.clone(), records: 0, changed: 0 };
    let mut reached = BTreeMap::new();
    let mut target = live_progress(read_models, &live, partitions).await?;
    let mut comparison;
    let mut round = 0;
    loop {
        // The scratch namespace is the audit's alone, and empty before the first round.
        let writes = if round == 0 { ReplayWrites::Fresh } else { ReplayWrites::Behind };
        let started = std::time::Instant::now();
        reached = replay_into(config, projection, read_models, &scratch, writes, &reached, Some(&target), &mut replay, on_progress).await?;
        let replayed = started.elapsed();
        comparison = compare(store.as_ref(), &live, &scratch, show).await?;
        round += 1;
        tracing::info!(
            message = "Audit round done.",
            round,
            records = replay.records,
            replay_ms = replayed.as_millis() as u64,
            compare_ms = (started.elapsed() - replayed).as_millis() as u64,
            differences = comparison.difference_count,
        );
        let now = live_progress(read_models, &live, partitions).await?;
        if comparison.difference_count == 0 || now == target || round == ROUNDS {
            break;
        }
        target = now;
    }
    if !keep_scratch {
        store.drop_namespace(&scratch).await?;
    }
    let outcome = AuditOutcome {
        read_model: read_model.to_string(),
        namespace: live.clone(),
        finished_at: chrono::Utc::now().timestamp_millis(),
        rows: comparison.live_rows,
        differences: comparison.difference_count,
    };
    read_models.record_audit(&outcome).await?;
    crate::metrics::METRICS.audit(read_model, outcome.differences, outcome.finished_at);
    Ok(AuditReport {
        read_model: read_model.to_string(),
        live,
        scratch,
        records: replay.records,
        live_rows: comparison.live_rows,
        replayed_rows: comparison.replayed_rows,
        difference_count: comparison.difference_count,
        differences: comparison.differences,
    })
}

async fn live_progress(read_models: &ReadModels, live: &str, partitions: i32) -> Result<BTreeMap<i32, i64>, StoreError> {
    let mut progress = BTreeMap::new();
    for partition in 0..partitions {
        progress.insert(partition, read_models.progress(live, partition).await?);
    }
    Ok(progress)
}

struct Comparison {
    live_rows: u64,
    replayed_rows: u64,
    difference_count: u64,
    differences: Vec<RowDifference>,
}

/// How many cells a namespace scan asks for at once.
const PAGE: usize = 1000;

/// Compares every row of `live` with `replayed` (their progress aside). Only a digest of each
/// replayed row is held, so an audit's memory grows with the number of rows, not their size;
/// the live rows stream past it, and a difference shows the live row as it was compared.
async fn compare(store: &dyn ReadStore, live: &str, replayed: &str, show: usize) -> Result<Comparison, StoreError> {
    let mut expected: FxHashMap<RowKey, u64> = FxHashMap::default();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_namespace(replayed, cursor.as_deref(), PAGE).await?;
        for stored in page.cells.into_iter().filter(|c| c.table != PROGRESS_TABLE) {
            expected.insert((stored.table, stored.partition, stored.cell.clustering_key), digest(&stored.cell.value));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let replayed_rows = expected.len() as u64;
    let mut comparison = Comparison { live_rows: 0, replayed_rows, difference_count: 0, differences: Vec::new() };
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_namespace(live, cursor.as_deref(), PAGE).await?;
        for stored in page.cells.into_iter().filter(|c| c.table != PROGRESS_TABLE) {
            comparison.live_rows += 1;
            let key = (stored.table, stored.partition, stored.cell.clustering_key);
            let same = expected.remove(&key).is_some_and(|d| d == digest(&stored.cell.value));
            if !same {
                comparison.difference_count += 1;
                if comparison.differences.len() < show {
                    let replayed_row = row(store, replayed, &key).await?;
                    comparison.differences.push(RowDifference { live: Some(text(&stored.cell.value)), replayed: replayed_row, key });
                }
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // What the replay has and the live namespace lacks.
    let mut missing: Vec<RowKey> = expected.into_keys().collect();
    missing.sort();
    comparison.difference_count += missing.len() as u64;
    for key in missing {
        if comparison.differences.len() >= show {
            break;
        }
        let replayed_row = row(store, replayed, &key).await?;
        comparison.differences.push(RowDifference { live: None, replayed: replayed_row, key });
    }
    Ok(comparison)
}

async fn row(store: &dyn ReadStore, namespace: &str, key: &RowKey) -> Result<Option<String>, StoreError> {
    let cell_key = CellKey { namespace, table: &key.0, partition: &key.1, clustering: &key.2 };
    Ok(store.get(cell_key).await?.map(|cell| text(&cell.value)))
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

fn digest(value: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
