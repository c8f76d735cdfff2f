//! The ScyllaDB read store: the production adapter of the read-store port.
//!
//! Each namespace is a keyspace `<prefix>_<namespace>` with one table
//! `cells (tbl text, pk text, ck text, value blob, PRIMARY KEY ((tbl, pk), ck))`, created on
//! first write. Writes carry `USING TIMESTAMP`, so ScyllaDB's own cell reconciliation is the
//! last-write-wins rule of the port (no LWT). A delete removes the whole row, marker included,
//! so a row is either fully live or fully shadowed.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
pub use scylla::statement::Consistency;
use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};
use scylla::response::query_result::QueryResult;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;

use super::{Cell, CellKey, NamespacePage, Page, ReadStore, StoreError, StoredCell, validate_name};

/// ScyllaDB limits keyspace names to 48 characters; with a 40-character namespace and the `_`
/// separator that leaves 7 for the prefix.
const MAX_PREFIX_LEN: usize = 7;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the adapter talks to the cluster.
#[derive(Debug, Clone)]
pub struct CqlOptions {
    /// Consistency level of every read and write (`SCYLLA_CONSISTENCY`, default
    /// `LOCAL_QUORUM`): with replication 3, reads see every acknowledged write.
    pub consistency: Consistency,
    /// Prefer coordinators in this datacenter (`SCYLLA_LOCAL_DC`); others only when it is down.
    pub local_datacenter: Option<String>,
}

impl Default for CqlOptions {
    fn default() -> Self {
        Self { consistency: Consistency::LocalQuorum, local_datacenter: None }
    }
}

impl CqlOptions {
    /// Parses a consistency level name as CQL spells it (`ONE`, `LOCAL_QUORUM`, …).
    pub fn parse_consistency(name: &str) -> Option<Consistency> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "ANY" => Consistency::Any,
            "ONE" => Consistency::One,
            "TWO" => Consistency::Two,
            "THREE" => Consistency::Three,
            "QUORUM" => Consistency::Quorum,
            "ALL" => Consistency::All,
            "LOCAL_QUORUM" => Consistency::LocalQuorum,
            "EACH_QUORUM" => Consistency::EachQuorum,
            "LOCAL_ONE" => Consistency::LocalOne,
            _ => return None,
        })
    }
}

/// A read store on a ScyllaDB (or Cassandra) cluster.
///
/// Statements are prepared once per namespace and routed token-aware (to a replica of the
/// partition, and on ScyllaDB to its shard) by the driver's default policy.
pub struct ScyllaStore {
    session: Session,
    keyspace_prefix: String,
    replication: String,
    /// Prepared statements per namespace whose keyspace is known to exist.
    statements: RwLock<HashMap<String, Arc<Statements>>>,
    /// Serialises schema changes from this process: concurrent DDL is slow and racy.
    schema_lock: tokio::sync::Mutex<()>,
}

/// The prepared statements of one namespace's `cells` table.
struct Statements {
    insert: PreparedStatement,
    delete: PreparedStatement,
    get: PreparedStatement,
    scan_first: PreparedStatement,
    scan_after: PreparedStatement,
    scan_all: PreparedStatement,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace_prefix", &self.keyspace_prefix)
            .field("replication", &self.replication)
            .finish_non_exhaustive()
    }
}

impl ScyllaStore {
    /// Connects to the cluster.
    ///
    /// - `uri`: comma-separated `host:port` contact points;
    /// - `keyspace_prefix`: 1 to 7 characters of `[a-z0-9_]`, namespaces become keyspaces
    ///   `<prefix>_<namespace>`;
    /// - `replication`: the CQL replication map used when a keyspace is created, e.g.
    ///   `{'class':'NetworkTopologyStrategy','replication_factor':3}`;
    /// - `credentials`: user and password for password authentication;
    /// - `options`: consistency level and preferred datacenter.
    pub async fn connect(
        uri: &str,
        keyspace_prefix: &str,
        replication: &str,
        credentials: Option<(String, String)>,
        options: &CqlOptions,
    ) -> Result<Self, StoreError> {
        if validate_name(keyspace_prefix).is_err() || keyspace_prefix.len() > MAX_PREFIX_LEN {
            return Err(StoreError::Engine(format!(
                "Invalid keyspace prefix {keyspace_prefix:?}: use [a-z0-9_], 1 to {MAX_PREFIX_LEN} characters"
            )));
        }
        let replication = replication.trim();
        // The map is spliced into DDL, so accept nothing but one map literal.
        if !(replication.starts_with('{') && replication.ends_with('}'))
            || replication.contains(';')
        {
            return Err(StoreError::Engine(format!(
                "Invalid replication {replication:?}: expected a CQL map such as \
                 {{'class':'SimpleStrategy','replication_factor':1}}"
            )));
        }
        let nodes: Vec<&str> = uri
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .collect();
        if nodes.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "No ScyllaDB contact point in {uri:?}"
            )));
        }
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(datacenter) = &options.local_datacenter {
            policy = policy.prefer_datacenter(datacenter.clone()).permit_dc_failover(true);
        }
        let profile = ExecutionProfile::builder()
            .consistency(options.consistency)
            .load_balancing_policy(policy.build())
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&nodes)
            .connection_timeout(CONNECT_TIMEOUT)
            .default_execution_profile_handle(profile.into_handle());
        if let Some((user, password)) = credentials {
            builder = builder.user(user, password);
        }
        let session = builder.build().await.map_err(|e| {
            StoreError::Unavailable(format!("Failed to connect to ScyllaDB at {uri}: {e}"))
        })?;
        Ok(Self {
            session,
            keyspace_prefix: keyspace_prefix.to_string(),
            replication: replication.to_string(),
            statements: RwLock::new(HashMap::new()),
            schema_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn keyspace(&self, namespace: &str) -> String {
        format!("{}_{namespace}", self.keyspace_prefix)
    }

    fn cached(&self, namespace: &str) -> Option<Arc<Statements>> {
        // The map is only ever replaced entry by entry, so a poisoned lock is still consistent.
        self.statements
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .cloned()
    }

    /// Forgets a namespace's statements, e.g. after its keyspace was dropped by someone else.
    fn forget(&self, namespace: &str) {
        self.statements
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(namespace);
    }

    /// The namespace's statements; with `create` its keyspace is created if missing, without
    /// it a missing keyspace gives `None` (reads then see an empty namespace).
    async fn statements(
        &self,
        namespace: &str,
        create: bool,
    ) -> Result<Option<Arc<Statements>>, StoreError> {
        validate_name(namespace)?;
        if let Some(statements) = self.cached(namespace) {
            return Ok(Some(statements));
        }
        let _schema = self.schema_lock.lock().await;
        if let Some(statements) = self.cached(namespace) {
            return Ok(Some(statements));
        }
        let keyspace = self.keyspace(namespace);
        if create {
            self.create_keyspace(&keyspace).await?;
        } else if !self.table_exists(&keyspace).await? {
            return Ok(None);
        }
        let statements = Arc::new(self.prepare_when_known(&keyspace).await?);
        self.statements
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.to_string(), Arc::clone(&statements));
        Ok(Some(statements))
    }

    async fn create_keyspace(&self, keyspace: &str) -> Result<(), StoreError> {
        // The session waits for schema agreement after DDL by default, so the table is usable
        // everywhere once these return.
        let create_keyspace = format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {}",
            self.replication
        );
        self.session
            .query_unpaged(create_keyspace, ())
            .await
            .map_err(execution_error(&format!(
                "Failed to create keyspace {keyspace}"
            )))?;
        let create_table = format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.cells \
             (tbl text, pk text, ck text, value blob, PRIMARY KEY ((tbl, pk), ck))"
        );
        self.session
            .query_unpaged(create_table, ())
            .await
            .map_err(execution_error(&format!(
                "Failed to create table {keyspace}.cells"
            )))?;
        Ok(())
    }

    async fn table_exists(&self, keyspace: &str) -> Result<bool, StoreError> {
        let result = self
            .session
            .query_unpaged(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'cells'",
                (keyspace,),
            )
            .await
            .map_err(execution_error("Failed to look up a keyspace"))?;
        let rows = result.into_rows_result().map_err(decode_error)?;
        Ok(rows.rows_num() > 0)
    }

    /// Prepares the keyspace's statements. A keyspace another process created a moment ago
    /// may not be known to every connection yet (seen for about 250 ms on Cassandra 5.0 right
    /// after a rebuild switched reads to its new namespace): wait for schema agreement and try
    /// again for a bounded while.
    async fn prepare_when_known(&self, keyspace: &str) -> Result<Statements, StoreError> {
        let mut attempts = 0;
        loop {
            match self.prepare(keyspace).await {
                Ok(statements) => return Ok(statements),
                Err(error) if attempts < 20 && error.to_string().contains("does not exist") => {
                    attempts += 1;
                    let _ = self.session.await_schema_agreement().await;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn prepare(&self, keyspace: &str) -> Result<Statements, StoreError> {
        let columns = "ck, value, WRITETIME(value)";
        Ok(Statements {
            insert: self
                .prepare_one(format!(
                    "INSERT INTO {keyspace}.cells (tbl, pk, ck, value) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
                ))
                .await?,
            delete: self
                .prepare_one(format!(
                    "DELETE FROM {keyspace}.cells USING TIMESTAMP ? WHERE tbl = ? AND pk = ? AND ck = ?"
                ))
                .await?,
            get: self
                .prepare_one(format!(
                    "SELECT {columns} FROM {keyspace}.cells WHERE tbl = ? AND pk = ? AND ck = ?"
                ))
                .await?,
            scan_first: self
                .prepare_one(format!(
                    "SELECT {columns} FROM {keyspace}.cells WHERE tbl = ? AND pk = ? LIMIT ?"
                ))
                .await?,
            scan_after: self
                .prepare_one(format!(
                    "SELECT {columns} FROM {keyspace}.cells WHERE tbl = ? AND pk = ? AND ck > ? LIMIT ?"
                ))
                .await?,
            scan_all: self.prepare_one(format!("SELECT tbl, pk, {columns} FROM {keyspace}.cells")).await?,
        })
    }

    async fn prepare_one(&self, cql: String) -> Result<PreparedStatement, StoreError> {
        let mut statement = self.session.prepare(cql).await.map_err(prepare_error)?;
        // Every statement carries its own timestamp or only reads, so retrying it is safe.
        statement.set_is_idempotent(true);
        Ok(statement)
    }

    /// Maps an execution error and drops cached statements that may point at a dropped keyspace.
    fn failed(&self, namespace: &str, context: &str, error: ExecutionError) -> StoreError {
        let error = execution_error(context)(error);
        if matches!(error, StoreError::Engine(_)) {
            self.forget(namespace);
        }
        error
    }
}

#[async_trait]
impl ReadStore for ScyllaStore {
    async fn put(&self, key: CellKey<'_>, value: &[u8], ts: i64) -> Result<(), StoreError> {
        validate_name(key.table)?;
        let Some(statements) = self.statements(key.namespace, true).await? else {
            return Err(StoreError::Engine(format!(
                "Namespace {:?} could not be created",
                key.namespace
            )));
        };
        self.session
            .execute_unpaged(
                &statements.insert,
                (key.table, key.partition, key.clustering, value, ts),
            )
            .await
            .map_err(|e| self.failed(key.namespace, "Failed to write a cell", e))?;
        Ok(())
    }

    async fn delete(&self, key: CellKey<'_>, ts: i64) -> Result<(), StoreError> {
        validate_name(key.table)?;
        // A delete must create the keyspace too: its tombstone hides later, older writes.
        let Some(statements) = self.statements(key.namespace, true).await? else {
            return Err(StoreError::Engine(format!(
                "Namespace {:?} could not be created",
                key.namespace
            )));
        };
        self.session
            .execute_unpaged(
                &statements.delete,
                (ts, key.table, key.partition, key.clustering),
            )
            .await
            .map_err(|e| self.failed(key.namespace, "Failed to delete a cell", e))?;
        Ok(())
    }

    async fn get(&self, key: CellKey<'_>) -> Result<Option<Cell>, StoreError> {
        validate_name(key.table)?;
        let Some(statements) = self.statements(key.namespace, false).await? else {
            return Ok(None);
        };
        let result = self
            .session
            .execute_unpaged(&statements.get, (key.table, key.partition, key.clustering))
            .await
            .map_err(|e| self.failed(key.namespace, "Failed to read a cell", e))?;
        Ok(cells(result)?.into_iter().next())
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
        let Some(statements) = self.statements(namespace, false).await? else {
            return Ok(Page {
                cells: Vec::new(),
                next: None,
            });
        };
        // One row more than asked tells whether another page exists.
        let fetch = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
        let result = match after {
            None => {
                self.session
                    .execute_unpaged(&statements.scan_first, (table, partition, fetch))
                    .await
            }
            Some(after) => {
                self.session
                    .execute_unpaged(&statements.scan_after, (table, partition, after, fetch))
                    .await
            }
        }
        .map_err(|e| self.failed(namespace, "Failed to scan a partition", e))?;
        let mut cells = cells(result)?;
        let more = cells.len() > limit;
        cells.truncate(limit);
        let next = if more {
            cells.last().map(|cell| cell.clustering_key.clone())
        } else {
            None
        };
        Ok(Page { cells, next })
    }

    async fn scan_namespace(&self, namespace: &str, cursor: Option<&[u8]>, limit: usize) -> Result<NamespacePage, StoreError> {
        validate_name(namespace)?;
        if limit == 0 {
            return Err(StoreError::Engine("A scan limit must be at least 1".into()));
        }
        let Some(statements) = self.statements(namespace, false).await? else {
            return Ok(NamespacePage { cells: Vec::new(), next: None });
        };
        let mut statement = statements.scan_all.clone();
        statement.set_page_size(i32::try_from(limit).unwrap_or(i32::MAX));
        let paging = cursor.map_or_else(PagingState::start, PagingState::new_from_raw_bytes);
        let (result, paged) = self
            .session
            .execute_single_page(&statement, (), paging)
            .await
            .map_err(|e| self.failed(namespace, "Failed to scan a namespace", e))?;
        let rows = result.into_rows_result().map_err(decode_error)?;
        let mut cells = Vec::with_capacity(rows.rows_num());
        for row in rows.rows::<(String, String, String, Option<Vec<u8>>, Option<i64>)>().map_err(decode_error)? {
            if let (table, partition, clustering_key, Some(value), Some(write_ts)) = row.map_err(decode_error)? {
                cells.push(StoredCell { table, partition, cell: Cell { clustering_key, value, write_ts } });
            }
        }
        let next = match paged {
            PagingStateResponse::HasMorePages { state } => state.as_bytes_slice().map(|bytes| bytes.to_vec()),
            PagingStateResponse::NoMorePages => None,
        };
        Ok(NamespacePage { cells, next })
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<(), StoreError> {
        validate_name(namespace)?;
        let _schema = self.schema_lock.lock().await;
        self.forget(namespace);
        let keyspace = self.keyspace(namespace);
        self.session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
            .await
            .map_err(execution_error(&format!(
                "Failed to drop keyspace {keyspace}"
            )))?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.session
            .query_unpaged("SELECT now() FROM system.local", ())
            .await
            .map_err(execution_error("ScyllaDB ping failed"))?;
        Ok(())
    }
}

/// Reads `ck, value, WRITETIME(value)` rows as cells.
fn cells(result: QueryResult) -> Result<Vec<Cell>, StoreError> {
    let rows = result.into_rows_result().map_err(decode_error)?;
    let mut cells = Vec::with_capacity(rows.rows_num());
    for row in rows
        .rows::<(String, Option<Vec<u8>>, Option<i64>)>()
        .map_err(decode_error)?
    {
        // A null value cannot be written through this adapter; skip rather than invent one.
        if let (clustering_key, Some(value), Some(write_ts)) = row.map_err(decode_error)? {
            cells.push(Cell {
                clustering_key,
                value,
                write_ts,
            });
        }
    }
    Ok(cells)
}

fn decode_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(format!("Unexpected ScyllaDB result: {error}"))
}

/// Maps a driver error, telling unreachable or overloaded nodes apart from refused requests.
fn execution_error(context: &str) -> impl FnOnce(ExecutionError) -> StoreError + '_ {
    move |error| {
        let unavailable = match &error {
            ExecutionError::ConnectionPoolError(_)
            | ExecutionError::EmptyPlan
            | ExecutionError::RequestTimeout(_) => true,
            ExecutionError::LastAttemptError(attempt) => attempt_unavailable(attempt),
            ExecutionError::PrepareError(prepare) => prepare_unavailable(prepare),
            _ => false,
        };
        let message = format!("{context}: {error}");
        if unavailable {
            StoreError::Unavailable(message)
        } else {
            StoreError::Engine(message)
        }
    }
}

fn prepare_error(error: PrepareError) -> StoreError {
    let message = format!("Failed to prepare a statement: {error}");
    if prepare_unavailable(&error) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Engine(message)
    }
}

fn prepare_unavailable(error: &PrepareError) -> bool {
    match error {
        PrepareError::ConnectionPoolError(_) => true,
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_unavailable(first_attempt),
        _ => false,
    }
}

fn attempt_unavailable(error: &RequestAttemptError) -> bool {
    match error {
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => true,
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::RateLimitReached { .. }
        ),
        _ => false,
    }
}
