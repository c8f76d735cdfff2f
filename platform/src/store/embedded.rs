//! The embedded read store: a local `fjall` LSM modelled like a wide-column store.
//!
//! Layout: one fjall partition per namespace, named `<namespace>#<generation>`; a key is
//! `table \0 len(partition) partition clustering`, so the cells of one partition are contiguous
//! and ordered by clustering key. The length prefix keeps partition keys that contain `\0` or
//! are prefixes of each other apart. A value is `kind ts payload`, where a tombstone keeps its
//! timestamp so that older writes arriving later stay hidden.
//!
//! A fresh generation per namespace incarnation lets `drop_namespace` delete the fjall
//! partition outright: fjall refuses to re-create a partition name until the deleted one's
//! folder is gone, which would break re-using a namespace right after dropping it. The map
//! namespace → generation lives in the `$meta` partition (no namespace partition contains `$`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use super::{Cell, CellKey, CellWrite, NamespacePage, Page, ReadStore, StoreError, StoredCell, incoming_wins, validate_name};

/// Name of the partition holding the namespace directory.
const META_PARTITION: &str = "$meta";
/// Meta key of the next unused generation number.
const NEXT_GENERATION_KEY: &[u8] = b"next_generation";
/// Meta key prefix of the namespace → generation entries.
const NAMESPACE_KEY_PREFIX: &[u8] = b"ns/";
/// Number of cell locks: enough that unrelated cells rarely share one on a small machine.
const LOCK_STRIPES: usize = 64;

const KIND_LIVE: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
/// Bytes before the payload of a stored value: kind + big-endian timestamp.
const VALUE_HEADER_LEN: usize = 9;

/// A read store kept in a local fjall keyspace (the single-machine default).
///
/// Every acknowledged write is in fjall's journal (handed to the OS before the call returns),
/// so a process restart loses nothing that was acknowledged.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Held for the store's lifetime; the OS releases it when the process ends.
    _lock: std::fs::File,
    path: PathBuf,
    keyspace: Keyspace,
    meta: PartitionHandle,
    /// Read-locked by every cell operation, write-locked to create or drop a namespace, so a
    /// drop never races a write into the partition it deletes.
    namespaces: RwLock<Namespaces>,
    /// Serialises the read-compare-write of one cell between concurrent writers.
    cell_locks: Box<[Mutex<()>]>,
}

struct Namespaces {
    open: HashMap<String, PartitionHandle>,
    next_generation: u64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in the directory `path`, recovering from its journal.
    ///
    /// Blocks on disk I/O; call it at startup or from a blocking context.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // fjall does not guard against a second process opening the same directory.
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Engine(format!("Failed to create {}: {e}", path.display())))?;
        let lock = std::fs::File::create(path.join("ticketing.lock"))
            .map_err(|e| StoreError::Engine(format!("Failed to create the store lock: {e}")))?;
        lock.try_lock().map_err(|_| {
            StoreError::Unavailable(format!(
                "the embedded store at {} is open in another process (stop `ticketing up` first)",
                path.display()
            ))
        })?;
        let keyspace = fjall::Config::new(path).open().map_err(engine(&format!(
            "Failed to open the embedded store at {}",
            path.display()
        )))?;
        let meta = keyspace
            .open_partition(META_PARTITION, PartitionCreateOptions::default())
            .map_err(engine("Failed to open the namespace directory"))?;

        let next_generation = match meta
            .get(NEXT_GENERATION_KEY)
            .map_err(engine("Failed to read the namespace directory"))?
        {
            Some(bytes) => decode_u64(&bytes)?,
            None => 0,
        };
        let mut generations = HashMap::new();
        for item in meta.prefix(NAMESPACE_KEY_PREFIX) {
            let (key, value) = item.map_err(engine("Failed to read the namespace directory"))?;
            let namespace = std::str::from_utf8(&key[NAMESPACE_KEY_PREFIX.len()..])
                .map_err(|_| StoreError::Engine("Corrupt namespace directory entry".into()))?
                .to_string();
            generations.insert(namespace, decode_u64(&value)?);
        }

        let mut open = HashMap::new();
        let mut wanted = HashSet::new();
        for (namespace, generation) in generations {
            let name = partition_name(&namespace, generation);
            let handle = keyspace
                .open_partition(&name, PartitionCreateOptions::default())
                .map_err(engine(&format!("Failed to open namespace {namespace:?}")))?;
            wanted.insert(name);
            open.insert(namespace, handle);
        }
        // A crash between creating a partition and recording it (or between forgetting and
        // deleting one) leaves an orphan: nothing can reach it, so delete it now.
        for name in keyspace.list_partitions() {
            let name: &str = &name;
            if name != META_PARTITION && !wanted.contains(name) {
                let handle = keyspace
                    .open_partition(name, PartitionCreateOptions::default())
                    .map_err(engine("Failed to open an orphaned partition"))?;
                keyspace
                    .delete_partition(handle)
                    .map_err(engine("Failed to delete an orphaned partition"))?;
            }
        }

        let cell_locks = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                _lock: lock,
                path: path.to_path_buf(),
                keyspace,
                meta,
                namespaces: RwLock::new(Namespaces {
                    open,
                    next_generation,
                }),
                cell_locks,
            }),
        })
    }

    /// Runs blocking fjall work off the async runtime's worker threads.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| StoreError::Engine(format!("Embedded store task failed: {e}")))?
    }

    /// Runs a cell operation on `namespace`: inline when the namespace is open, else (it may
    /// have to be created, with an fsync) on a blocking thread.
    ///
    /// Point operations on an open namespace take microseconds (memtable, block cache, the
    /// journal write handed to the OS); handing each to a blocking thread and back cost more
    /// than the work and dominated projection and replay (see BENCHMARKS.md).
    async fn cell_operation<T, F>(&self, namespace: &str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        if self.inner.is_open(namespace) { work(&self.inner) } else { self.blocking(work).await }
    }

    /// Applies a write (`Some`) or a delete (`None`) under the last-write-wins rule.
    async fn apply(
        &self,
        key: CellKey<'_>,
        value: Option<&[u8]>,
        ts: i64,
    ) -> Result<(), StoreError> {
        validate_name(key.namespace)?;
        validate_name(key.table)?;
        let namespace = key.namespace.to_string();
        let cell_key = encode_key(key.table, key.partition, key.clustering)?;
        let incoming = value.map(<[u8]>::to_vec);
        self.cell_operation(key.namespace, move |inner| {
            inner.with_namespace(&namespace, true, |partition| {
                let Some(partition) = partition else {
                    return Err(StoreError::Engine(format!(
                        "Namespace {namespace:?} could not be created"
                    )));
                };
                let _cell = inner.lock_cell(&namespace, &cell_key);
                if !wins_over_stored(partition, &cell_key, ts, incoming.as_deref())? {
                    return Ok(());
                }
                let stored = encode_value(ts, incoming.as_deref());
                partition
                    .insert(cell_key, stored)
                    .map_err(engine("Failed to write a cell"))
            })
        })
        .await
    }

    /// Applies the writes of one namespace as one fjall batch: one journal write for all of
    /// them (a write each was a replay's flush's largest cost) under the locks of their cells.
    async fn apply_batch(&self, namespace: &str, writes: &[CellWrite<'_>]) -> Result<(), StoreError> {
        validate_name(namespace)?;
        let mut cells = Vec::with_capacity(writes.len());
        for write in writes {
            validate_name(write.key.table)?;
            let cell_key = encode_key(write.key.table, write.key.partition, write.key.clustering)?;
            cells.push((cell_key, write.ts, write.value.map(<[u8]>::to_vec)));
        }
        // Stable: of two writes to one cell, the rule decides between them as it would in turn.
        cells.sort_by(|a, b| a.0.cmp(&b.0));
        let owned_namespace = namespace.to_string();
        // Thousands of cells take milliseconds: off the runtime's workers, unlike one cell.
        self.blocking(move |inner| {
            inner.with_namespace(&owned_namespace, true, |partition| {
                let Some(partition) = partition else {
                    return Err(StoreError::Engine(format!("Namespace {owned_namespace:?} could not be created")));
                };
                let mut winners: Vec<(Vec<u8>, i64, Option<Vec<u8>>)> = Vec::with_capacity(cells.len());
                for (cell_key, ts, incoming) in cells {
                    if let Some(last) = winners.last_mut()
                        && last.0 == cell_key
                    {
                        if incoming_wins((last.1, last.2.as_deref()), (ts, incoming.as_deref())) {
                            *last = (cell_key, ts, incoming);
                        }
                        continue;
                    }
                    winners.push((cell_key, ts, incoming));
                }
                let stripes: std::collections::BTreeSet<usize> =
                    winners.iter().map(|(cell_key, ..)| inner.cell_stripe(&owned_namespace, cell_key)).collect();
                // In ascending order, as no other writer holds more than one.
                let _cells: Vec<_> = stripes.into_iter().map(|stripe| inner.lock_stripe(stripe)).collect();
                let mut batch = inner.keyspace.batch();
                for (cell_key, ts, incoming) in winners {
                    if !wins_over_stored(partition, &cell_key, ts, incoming.as_deref())? {
                        continue;
                    }
                    batch.insert(partition, cell_key, encode_value(ts, incoming.as_deref()));
                }
                batch.commit().map_err(engine("Failed to write cells"))
            })
        })
        .await
    }
}

/// Whether a write (`Some`) or delete (`None`) at `ts` replaces what `partition` holds for the
/// cell (the caller holds the cell's lock).
fn wins_over_stored(partition: &PartitionHandle, cell_key: &[u8], ts: i64, incoming: Option<&[u8]>) -> Result<bool, StoreError> {
    let existing = partition.get(cell_key).map_err(engine("Failed to read a cell"))?;
    match existing {
        Some(existing) => Ok(incoming_wins(decode_value(&existing)?, (ts, incoming))),
        None => Ok(true),
    }
}

impl Inner {
    /// Whether `namespace` exists and is open.
    fn is_open(&self, namespace: &str) -> bool {
        self.namespaces.read().unwrap_or_else(PoisonError::into_inner).open.contains_key(namespace)
    }

    /// Runs `work` with the namespace's partition (`None` if it does not exist and `create` is
    /// false) while holding the namespace lock.
    fn with_namespace<T>(
        &self,
        namespace: &str,
        create: bool,
        work: impl FnOnce(Option<&PartitionHandle>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        {
            // A panic elsewhere cannot leave the map half-updated, so a poisoned lock is usable.
            let namespaces = self
                .namespaces
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(partition) = namespaces.open.get(namespace) {
                return work(Some(partition));
            }
            if !create {
                return work(None);
            }
        }
        let mut namespaces = self
            .namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !namespaces.open.contains_key(namespace) {
            let partition = self.create_namespace(namespace, &mut namespaces)?;
            namespaces.open.insert(namespace.to_string(), partition);
        }
        // Creation is rare, so finishing this one operation under the write lock is fine.
        work(namespaces.open.get(namespace))
    }

    fn create_namespace(
        &self,
        namespace: &str,
        namespaces: &mut Namespaces,
    ) -> Result<PartitionHandle, StoreError> {
        let generation = namespaces.next_generation;
        let mut batch = self.keyspace.batch();
        batch.insert(
            &self.meta,
            NEXT_GENERATION_KEY,
            (generation + 1).to_be_bytes(),
        );
        batch.insert(
            &self.meta,
            namespace_meta_key(namespace),
            generation.to_be_bytes(),
        );
        batch
            .commit()
            .map_err(engine("Failed to record a new namespace"))?;
        // Directory changes are rare; syncing them keeps the directory and the partitions on
        // disk in step even across a machine crash.
        self.keyspace
            .persist(PersistMode::SyncAll)
            .map_err(engine("Failed to persist the namespace directory"))?;
        namespaces.next_generation = generation + 1;
        self.keyspace
            .open_partition(
                &partition_name(namespace, generation),
                PartitionCreateOptions::default(),
            )
            .map_err(engine(&format!("Failed to create namespace {namespace:?}")))
    }

    fn drop_namespace(&self, namespace: &str) -> Result<(), StoreError> {
        let mut namespaces = self
            .namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(partition) = namespaces.open.remove(namespace) else {
            return Ok(());
        };
        // Forget it first: if deleting fails or the process dies, the partition is an orphan
        // that the next open deletes, never a namespace that comes back.
        self.meta
            .remove(namespace_meta_key(namespace))
            .map_err(engine("Failed to forget a namespace"))?;
        self.keyspace
            .persist(PersistMode::SyncAll)
            .map_err(engine("Failed to persist the namespace directory"))?;
        self.keyspace
            .delete_partition(partition)
            .map_err(engine(&format!("Failed to delete namespace {namespace:?}")))
    }

    /// Which cell lock guards a cell.
    fn cell_stripe(&self, namespace: &str, cell_key: &[u8]) -> usize {
        let mut hasher = DefaultHasher::new();
        namespace.hash(&mut hasher);
        cell_key.hash(&mut hasher);
        (hasher.finish() % self.cell_locks.len() as u64) as usize
    }

    fn lock_stripe(&self, stripe: usize) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`, so a poisoned lock carries no broken state.
        self.cell_locks[stripe].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_cell(&self, namespace: &str, cell_key: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        self.lock_stripe(self.cell_stripe(namespace, cell_key))
    }
}

#[async_trait]
impl ReadStore for EmbeddedStore {
    async fn put(&self, key: CellKey<'_>, value: &[u8], ts: i64) -> Result<(), StoreError> {
        self.apply(key, Some(value), ts).await
    }

    async fn delete(&self, key: CellKey<'_>, ts: i64) -> Result<(), StoreError> {
        self.apply(key, None, ts).await
    }

    async fn write_many(&self, writes: &[CellWrite<'_>]) -> Result<(), StoreError> {
        let mut by_namespace: std::collections::BTreeMap<&str, Vec<CellWrite<'_>>> = std::collections::BTreeMap::new();
        for write in writes {
            by_namespace.entry(write.key.namespace).or_default().push(*write);
        }
        for (namespace, writes) in by_namespace {
            self.apply_batch(namespace, &writes).await?;
        }
        Ok(())
    }

    async fn get(&self, key: CellKey<'_>) -> Result<Option<Cell>, StoreError> {
        validate_name(key.namespace)?;
        validate_name(key.table)?;
        let namespace = key.namespace.to_string();
        let clustering_key = key.clustering.to_string();
        let cell_key = encode_key(key.table, key.partition, key.clustering)?;
        self.cell_operation(key.namespace, move |inner| {
            inner.with_namespace(&namespace, false, |partition| {
                let Some(partition) = partition else {
                    return Ok(None);
                };
                let Some(stored) = partition
                    .get(&cell_key)
                    .map_err(engine("Failed to read a cell"))?
                else {
                    return Ok(None);
                };
                Ok(match decode_value(&stored)? {
                    (write_ts, Some(value)) => Some(Cell {
                        clustering_key,
                        value: value.to_vec(),
                        write_ts,
                    }),
                    (_, None) => None,
                })
            })
        })
        .await
    }

    async fn scan(
        &self,
        namespace: &str,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        validate_name(namespace)?;
        validate_name(table)?;
        if limit == 0 {
            // An empty page with a `next` would make a paging loop spin forever.
            return Err(StoreError::Engine("A scan limit must be at least 1".into()));
        }
        let namespace = namespace.to_string();
        let prefix = encode_key(table, partition, "")?;
        let start = match after {
            None => Bound::Included(prefix.clone()),
            Some(after) => Bound::Excluded(encode_key(table, partition, after)?),
        };
        self.cell_operation(&namespace.clone(), move |inner| {
            inner.with_namespace(&namespace, false, |handle| {
                let Some(handle) = handle else {
                    return Ok(Page {
                        cells: Vec::new(),
                        next: None,
                    });
                };
                let mut cells = Vec::new();
                let mut more = false;
                for item in handle.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
                    let (key, stored) = item.map_err(engine("Failed to scan a partition"))?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    let (write_ts, Some(value)) = decode_value(&stored)? else {
                        continue;
                    };
                    if cells.len() == limit {
                        // One more live cell exists, so the caller must ask again.
                        more = true;
                        break;
                    }
                    let clustering_key = String::from_utf8(key[prefix.len()..].to_vec())
                        .map_err(|_| StoreError::Engine("Corrupt clustering key".into()))?;
                    cells.push(Cell {
                        clustering_key,
                        value: value.to_vec(),
                        write_ts,
                    });
                }
                let next = if more {
                    cells.last().map(|cell| cell.clustering_key.clone())
                } else {
                    None
                };
                Ok(Page { cells, next })
            })
        })
        .await
    }

    async fn scan_namespace(&self, namespace: &str, cursor: Option<&[u8]>, limit: usize) -> Result<NamespacePage, StoreError> {
        validate_name(namespace)?;
        if limit == 0 {
            return Err(StoreError::Engine("A scan limit must be at least 1".into()));
        }
        let namespace = namespace.to_string();
        let start = match cursor {
            None => Bound::Unbounded,
            Some(after) => Bound::Excluded(after.to_vec()),
        };
        self.cell_operation(&namespace.clone(), move |inner| {
            inner.with_namespace(&namespace, false, |handle| {
                let Some(handle) = handle else { return Ok(NamespacePage { cells: Vec::new(), next: None }) };
                let mut cells = Vec::new();
                let mut last = None;
                for item in handle.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
                    let (key, stored) = item.map_err(engine("Failed to scan a namespace"))?;
                    if cells.len() == limit {
                        return Ok(NamespacePage { cells, next: last });
                    }
                    let (write_ts, Some(value)) = decode_value(&stored)? else { continue };
                    let (table, partition, clustering_key) = decode_key(&key)?;
                    cells.push(StoredCell { table, partition, cell: Cell { clustering_key, value: value.to_vec(), write_ts } });
                    last = Some(key.to_vec());
                }
                Ok(NamespacePage { cells, next: None })
            })
        })
        .await
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<(), StoreError> {
        validate_name(namespace)?;
        let namespace = namespace.to_string();
        self.blocking(move |inner| inner.drop_namespace(&namespace))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Wraps a fjall error with what was being done.
fn engine(context: &str) -> impl FnOnce(fjall::Error) -> StoreError + '_ {
    move |error| StoreError::Engine(format!("{context}: {error}"))
}

fn partition_name(namespace: &str, generation: u64) -> String {
    // Namespaces are [a-z0-9_] (validated), so this is a valid, unambiguous fjall name.
    format!("{namespace}#{generation}")
}

fn namespace_meta_key(namespace: &str) -> Vec<u8> {
    [NAMESPACE_KEY_PREFIX, namespace.as_bytes()].concat()
}

/// Longest key fjall accepts (it panics beyond it, so check first).
const MAX_KEY_LEN: usize = u16::MAX as usize;

/// The table, partition key and clustering key of an [`encode_key`] key.
fn decode_key(key: &[u8]) -> Result<(String, String, String), StoreError> {
    let corrupt = || StoreError::Engine("Corrupt cell key".into());
    let table_end = key.iter().position(|b| *b == 0).ok_or_else(corrupt)?;
    let length_bytes: [u8; 4] = key.get(table_end + 1..table_end + 5).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?;
    let partition_start = table_end + 5;
    let partition_end = partition_start + u32::from_be_bytes(length_bytes) as usize;
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| corrupt());
    Ok((
        text(&key[..table_end])?,
        text(key.get(partition_start..partition_end).ok_or_else(corrupt)?)?,
        text(&key[partition_end..])?,
    ))
}

fn encode_key(table: &str, partition: &str, clustering: &str) -> Result<Vec<u8>, StoreError> {
    let len = table.len() + 5 + partition.len() + clustering.len();
    if len > MAX_KEY_LEN {
        return Err(StoreError::Engine(format!(
            "Partition and clustering keys too long: {len} bytes with the table name, at most {MAX_KEY_LEN}"
        )));
    }
    let mut key = Vec::with_capacity(len);
    // Table names never contain `\0` (validated), so it ends the table unambiguously.
    key.extend_from_slice(table.as_bytes());
    key.push(0);
    // Checked above: the partition key is shorter than 64 KiB.
    key.extend_from_slice(&(partition.len() as u32).to_be_bytes());
    key.extend_from_slice(partition.as_bytes());
    key.extend_from_slice(clustering.as_bytes());
    Ok(key)
}

fn encode_value(ts: i64, value: Option<&[u8]>) -> Vec<u8> {
    let payload = value.unwrap_or_default();
    let mut stored = Vec::with_capacity(VALUE_HEADER_LEN + payload.len());
    stored.push(if value.is_some() {
        KIND_LIVE
    } else {
        KIND_TOMBSTONE
    });
    stored.extend_from_slice(&ts.to_be_bytes());
    stored.extend_from_slice(payload);
    stored
}

/// Splits a stored value into its timestamp and payload (`None` for a tombstone).
fn decode_value(stored: &[u8]) -> Result<(i64, Option<&[u8]>), StoreError> {
    let corrupt = || StoreError::Engine("Corrupt cell value".into());
    if stored.len() < VALUE_HEADER_LEN {
        return Err(corrupt());
    }
    let ts = i64::from_be_bytes(
        stored[1..VALUE_HEADER_LEN]
            .try_into()
            .map_err(|_| corrupt())?,
    );
    match stored[0] {
        KIND_LIVE => Ok((ts, Some(&stored[VALUE_HEADER_LEN..]))),
        KIND_TOMBSTONE => Ok((ts, None)),
        _ => Err(corrupt()),
    }
}

fn decode_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Engine("Corrupt namespace directory value".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_that_are_prefixes_of_each_other_do_not_overlap() {
        let short = encode_key("t", "p", "").unwrap();
        let long = encode_key("t", "p1", "").unwrap();
        assert!(!long.starts_with(&short));
        assert!(encode_key("t", "p", "1").unwrap().starts_with(&short));
        assert!(encode_key("t", "p", &"x".repeat(70_000)).is_err());
    }

    #[test]
    fn values_round_trip() {
        assert_eq!(
            decode_value(&encode_value(-7, Some(b"abc"))).unwrap(),
            (-7, Some(&b"abc"[..]))
        );
        assert_eq!(
            decode_value(&encode_value(42, Some(b""))).unwrap(),
            (42, Some(&b""[..]))
        );
        assert_eq!(decode_value(&encode_value(42, None)).unwrap(), (42, None));
        assert!(decode_value(b"\x00abc").is_err());
    }
}
