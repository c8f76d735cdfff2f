//! A write-behind overlay of a read store for replays.
//!
//! A replay applies every event of a topic, and most of them rewrite a row that an earlier
//! event of the same aggregate wrote moments before: through the store, each event costs a read
//! and a write (over the network, on ScyllaDB). The overlay keeps the cells a replay touches in
//! memory, answers its reads from there, and writes only each cell's last state to the store
//! when [`WriteBehind::flush`] is called (by the replay, every so many records and at its end).
//! The store's last-write-wins rule holds in the overlay as it does in the store.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rustc_hash::{FxHashMap, FxHashSet};

use super::{Cell, CellKey, CellWrite, NamespacePage, Page, ReadStore, StoreError, incoming_wins, validate_name};

/// A cell's place, owned: its key's four parts in one string (one allocation, and one run of
/// bytes to hash and compare: four strings were a tenth of a replay's time), with where the
/// first three end.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Place {
    text: Box<str>,
    ends: [u32; 3],
}

impl Place {
    fn of(key: CellKey<'_>) -> Self {
        let parts = [key.namespace, key.table, key.partition, key.clustering];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0; 3];
        for (i, part) in parts.iter().enumerate() {
            text.push_str(part);
            if let Some(end) = ends.get_mut(i) {
                *end = text.len() as u32;
            }
        }
        Self { text: text.into_boxed_str(), ends }
    }

    fn namespace(&self) -> &str {
        &self.text[..self.ends[0] as usize]
    }

    fn clustering(&self) -> &str {
        &self.text[self.ends[2] as usize..]
    }

    fn key(&self) -> CellKey<'_> {
        let [a, b, c] = self.ends.map(|e| e as usize);
        CellKey { namespace: &self.text[..a], table: &self.text[a..b], partition: &self.text[b..c], clustering: &self.text[c..] }
    }
}

/// What the overlay knows of a cell: its timestamp and value (`None`: deleted, or absent from
/// the store when `ts` is `i64::MIN`), and whether the store still lacks it.
#[derive(Debug, Clone)]
struct Known {
    ts: i64,
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// Deletions the overlay keeps knowing after a flush at most (beyond, a replay relies on its
/// projection's own version checks to ignore events older than a deletion).
const MAX_KNOWN_TOMBSTONES: usize = 100_000;

/// Cells a flush hands the store at once ([`ReadStore::write_many`]).
pub const FLUSH_BATCH: usize = 4096;

/// The overlay; see the module docs. Scans and other namespace-wide reads flush first, so they
/// see every write.
pub struct WriteBehind {
    store: Arc<dyn ReadStore>,
    cells: Mutex<FxHashMap<Place, Known>>,
    /// Over namespaces that were empty, which only this overlay writes to: the hashes of the
    /// places it has written to the store. Any other place is absent without asking the store
    /// (looking up cells that are not there was a third of a fresh rebuild's store time).
    written: Option<Mutex<FxHashSet<u64>>>,
}

impl WriteBehind {
    /// An empty overlay of `store`.
    pub fn new(store: Arc<dyn ReadStore>) -> Self {
        Self { store, cells: Mutex::new(FxHashMap::default()), written: None }
    }

    /// An empty overlay of `store` for writing into namespaces that hold nothing yet and that
    /// nothing else writes to while it is used (a fresh rebuild's or audit's namespace).
    pub fn over_empty(store: Arc<dyn ReadStore>) -> Self {
        Self { written: Some(Mutex::new(FxHashSet::default())), ..Self::new(store) }
    }

    /// Cells written to the overlay that the store does not have yet.
    pub fn pending(&self) -> usize {
        self.cells.lock().expect("overlay lock").values().filter(|k| k.dirty).count()
    }

    /// Writes every pending cell to the store and forgets what it held. On a failure the cells
    /// not yet written stay pending, so the flush can be tried again.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let pending: Vec<(Place, Known)> = {
            let cells = self.cells.lock().expect("overlay lock");
            cells.iter().filter(|(_, k)| k.dirty).map(|(p, k)| (p.clone(), k.clone())).collect()
        };
        if let Some(written) = &self.written {
            // Before writing: a failed write may still have reached the store.
            written.lock().expect("written places lock").extend(pending.iter().map(|(place, _)| place_hash(place)));
        }
        let mut failure = None;
        let mut written_chunks = Vec::new();
        for chunk in pending.chunks(FLUSH_BATCH) {
            let writes: Vec<CellWrite<'_>> = chunk
                .iter()
                .map(|(place, known)| CellWrite { key: place.key(), value: known.value.as_deref(), ts: known.ts })
                .collect();
            match self.store.write_many(&writes).await {
                Ok(()) => written_chunks.push(chunk),
                Err(error) => failure = Some(error),
            }
        }
        let mut cells = self.cells.lock().expect("overlay lock");
        for (place, written) in written_chunks.into_iter().flatten() {
            // Forgotten unless written to again meanwhile.
            if let Some(now) = cells.get_mut(place)
                && now.ts == written.ts
                && now.value == written.value
            {
                now.dirty = false;
            }
        }
        // Deletions stay known: the store keeps its tombstones to itself, and an older write
        // must not show through the overlay where the store would refuse it.
        let tombstones_kept = cells.len() <= MAX_KNOWN_TOMBSTONES;
        cells.retain(|_, known| known.dirty || (tombstones_kept && known.value.is_none() && known.ts != i64::MIN));
        failure.map_or(Ok(()), Err)
    }

    /// What the store holds of `place`, for the overlay to know it.
    async fn read_from_store(&self, place: &Place) -> Result<Known, StoreError> {
        if let Some(written) = &self.written
            && !written.lock().expect("written places lock").contains(&place_hash(place))
        {
            // The store would refuse these names on reading; so does the overlay.
            let key = place.key();
            validate_name(key.namespace)?;
            validate_name(key.table)?;
            return Ok(Known { ts: i64::MIN, value: None, dirty: false });
        }
        Ok(match self.store.get(place.key()).await? {
            Some(cell) => Known { ts: cell.write_ts, value: Some(cell.value), dirty: false },
            None => Known { ts: i64::MIN, value: None, dirty: false },
        })
    }

    async fn write(&self, key: CellKey<'_>, value: Option<&[u8]>, ts: i64) -> Result<(), StoreError> {
        let place = Place::of(key);
        let mut read = None;
        loop {
            {
                let mut cells = self.cells.lock().expect("overlay lock");
                // Judged under the lock against the latest state: what the overlay knows, else
                // what was read from the store (unless another write made it known meanwhile).
                let known = match read.take() {
                    Some(read) => Some(cells.entry(place.clone()).or_insert(read)),
                    None => cells.get_mut(&place),
                };
                if let Some(known) = known {
                    let existing = (known.ts != i64::MIN).then_some((known.ts, known.value.as_deref()));
                    if existing.is_none_or(|existing| incoming_wins(existing, (ts, value))) {
                        *known = Known { ts, value: value.map(<[u8]>::to_vec), dirty: true };
                    }
                    return Ok(());
                }
            }
            read = Some(self.read_from_store(&place).await?);
        }
    }
}

fn place_hash(place: &Place) -> u64 {
    use std::hash::BuildHasher as _;
    rustc_hash::FxBuildHasher.hash_one(place)
}

#[async_trait]
impl ReadStore for WriteBehind {
    async fn put(&self, key: CellKey<'_>, value: &[u8], ts: i64) -> Result<(), StoreError> {
        self.write(key, Some(value), ts).await
    }

    async fn delete(&self, key: CellKey<'_>, ts: i64) -> Result<(), StoreError> {
        self.write(key, None, ts).await
    }

    async fn get(&self, key: CellKey<'_>) -> Result<Option<Cell>, StoreError> {
        let place = Place::of(key);
        let cell_of = |known: &Known| {
            known.value.clone().map(|value| Cell { clustering_key: place.clustering().to_string(), value, write_ts: known.ts })
        };
        if let Some(known) = self.cells.lock().expect("overlay lock").get(&place) {
            return Ok(cell_of(known));
        }
        let read = self.read_from_store(&place).await?;
        let mut cells = self.cells.lock().expect("overlay lock");
        // A write that made the cell known meanwhile is newer than what was read.
        Ok(cell_of(cells.entry(place.clone()).or_insert(read)))
    }

    async fn scan(
        &self,
        namespace: &str,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.flush().await?;
        self.store.scan(namespace, table, partition, after, limit).await
    }

    async fn scan_namespace(&self, namespace: &str, cursor: Option<&[u8]>, limit: usize) -> Result<NamespacePage, StoreError> {
        self.flush().await?;
        self.store.scan_namespace(namespace, cursor, limit).await
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<(), StoreError> {
        self.cells.lock().expect("overlay lock").retain(|place, _| place.namespace() != namespace);
        self.store.drop_namespace(namespace).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}
