//! The read-store port: a wide-column model (partition key + clustering key, ordered ranges,
//! paging, write-timestamp last-write-wins) that both the embedded engine and ScyllaDB honour.
//!
//! Every cell is written with a caller-chosen timestamp. A write or delete only takes effect if
//! its timestamp is greater than the one already stored; on equal timestamps a delete beats a
//! write and, between two writes, the greater value wins (Cassandra's rule). Projectors use the
//! aggregate version as the timestamp, which makes stale and repeated events harmless without
//! any lightweight transaction.

pub mod conformance;
mod embedded;
mod scylla;
mod write_behind;

pub use embedded::EmbeddedStore;
pub use scylla::{Consistency, CqlOptions, ScyllaStore};
pub use write_behind::{FLUSH_BATCH, WriteBehind};

use async_trait::async_trait;

/// Failures of a read store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached.
    #[error("The read store is unavailable: {0}")]
    Unavailable(String),
    /// A name (namespace, table) the store cannot use.
    #[error("Invalid read-store name {0:?}: use [a-z0-9_], 1 to 40 characters")]
    InvalidName(String),
    /// Any other failure of the engine.
    #[error("Read store failure: {0}")]
    Engine(String),
}

/// One live cell of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The clustering key; cells of a partition are ordered by it (byte order).
    pub clustering_key: String,
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The timestamp the cell was written with.
    pub write_ts: i64,
}

/// One page of a partition scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Live cells in clustering-key order.
    pub cells: Vec<Cell>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A live cell anywhere in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCell {
    /// Its table.
    pub table: String,
    /// Its partition key.
    pub partition: String,
    /// The cell.
    pub cell: Cell,
}

/// One page of a whole-namespace scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePage {
    /// Live cells, in the store's own order.
    pub cells: Vec<StoredCell>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next: Option<Vec<u8>>,
}

/// Where a cell lives: namespace (keyspace), table, partition key, clustering key.
#[derive(Debug, Clone, Copy)]
pub struct CellKey<'a> {
    /// Namespace (a keyspace in ScyllaDB); a rebuild writes into a fresh one.
    pub namespace: &'a str,
    /// Table within the namespace.
    pub table: &'a str,
    /// Partition key.
    pub partition: &'a str,
    /// Clustering key within the partition.
    pub clustering: &'a str,
}

/// One write of [`ReadStore::write_many`].
#[derive(Debug, Clone, Copy)]
pub struct CellWrite<'a> {
    /// The cell.
    pub key: CellKey<'a>,
    /// Its new value; `None` deletes it.
    pub value: Option<&'a [u8]>,
    /// The write's timestamp (last write wins).
    pub ts: i64,
}

/// Writes in flight at once in [`ReadStore::write_many`]'s default (a network store takes many).
const WRITE_MANY_CONCURRENCY: usize = 64;

/// The read-store port.
#[async_trait]
pub trait ReadStore: Send + Sync + 'static {
    /// Applies many writes and deletes, each under the same rule as [`ReadStore::put`] and
    /// [`ReadStore::delete`], in one go where the store can (a replay writes its rows by the
    /// thousand). Not atomic: after an error some of them may have been applied, and applying
    /// them again is harmless.
    async fn write_many(&self, writes: &[CellWrite<'_>]) -> Result<(), StoreError> {
        use futures::StreamExt as _;
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut outcome = Ok(());
        for write in writes {
            if in_flight.len() >= WRITE_MANY_CONCURRENCY
                && let Some(Err(error)) = in_flight.next().await
            {
                outcome = Err(error);
            }
            in_flight.push(async move {
                match write.value {
                    Some(value) => self.put(write.key, value, write.ts).await,
                    None => self.delete(write.key, write.ts).await,
                }
            });
        }
        while let Some(result) = in_flight.next().await {
            if let Err(error) = result {
                outcome = Err(error);
            }
        }
        outcome
    }

    /// Writes `value` with timestamp `ts` (last write wins, see the module docs).
    async fn put(&self, key: CellKey<'_>, value: &[u8], ts: i64) -> Result<(), StoreError>;

    /// Deletes the cell with timestamp `ts`: it hides writes with a timestamp up to `ts`.
    async fn delete(&self, key: CellKey<'_>, ts: i64) -> Result<(), StoreError>;

    /// Reads one live cell.
    async fn get(&self, key: CellKey<'_>) -> Result<Option<Cell>, StoreError>;

    /// Reads up to `limit` live cells of a partition with clustering keys after `after`.
    async fn scan(
        &self,
        namespace: &str,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// Reads about `limit` live cells of every table of a namespace, after `cursor` (a page's
    /// `next`), in an order of the store's own choosing: for audits, which compare whole
    /// namespaces.
    async fn scan_namespace(&self, namespace: &str, cursor: Option<&[u8]>, limit: usize) -> Result<NamespacePage, StoreError>;

    /// Removes a namespace and everything in it.
    async fn drop_namespace(&self, namespace: &str) -> Result<(), StoreError>;

    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Checks a namespace or table name: both adapters use it in identifiers.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { Ok(()) } else { Err(StoreError::InvalidName(name.to_string())) }
}

/// Decides whether an incoming write or delete replaces what is stored (Cassandra's LWW rule).
///
/// `existing` and `incoming` are `(timestamp, value)` with `None` for a tombstone.
pub fn incoming_wins(existing: (i64, Option<&[u8]>), incoming: (i64, Option<&[u8]>)) -> bool {
    match incoming.0.cmp(&existing.0) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => match (existing.1, incoming.1) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(old), Some(new)) => new > old,
        },
    }
}
