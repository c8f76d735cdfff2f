//! The HTTP read side: the reference app's GET routes served from the read store, with
//! read-your-writes through `X-Consistency-Token`, and read-only snapshots of a read model as
//! of a time through `X-Read-Namespace`.

pub mod live;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use platform::http::{ApiError, ConsistencyToken};
use platform::log::EndOffsets;
use platform::projection::ReadModels;
use platform::store::Cell;
use platform::session::{CurrentUser, SessionKeys};
use projectors::orders::{ORDERS_BY_USER_TABLE, OrderRow, get_order};
use projectors::tickets::{
    FOR_SALE_SHARDS, FOR_SALE_TABLE, FOR_SALE_WEEKS_PARTITION, FOR_SALE_WEEKS_TABLE, TicketRow, get_ticket,
    shard_partition,
};

/// The request header that asks for a snapshot namespace (`ticketing rebuild --as-of`) instead
/// of the live read model.
pub const READ_NAMESPACE_HEADER: &str = "x-read-namespace";

/// The snapshot namespace a request names, checked to hold `read_model`; `None` for the live one.
async fn snapshot_namespace(state: &QueryState, read_model: &str, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(READ_NAMESPACE_HEADER) else { return Ok(None) };
    let unknown = || ApiError::Missing(format!("{READ_NAMESPACE_HEADER} names no snapshot of the {read_model} read model"));
    let namespace = value.to_str().map_err(|_| unknown())?.trim();
    match state.read_models.snapshot(namespace).await.map_err(unavailable)? {
        Some(snapshot) if snapshot.read_model == read_model => Ok(Some(namespace.to_string())),
        _ => Err(unknown()),
    }
}

/// How long a query waits for the projection to reach a consistency token.
pub const CONSISTENCY_WAIT: Duration = Duration::from_secs(2);

/// What the query routes need.
#[derive(Clone)]
pub struct QueryState {
    /// The catalog of read models and the store behind it.
    pub read_models: ReadModels,
    /// Session verification (orders are private).
    pub keys: SessionKeys,
    /// Most tickets `GET /api/tickets` answers: the most recently listed ones.
    pub list_limit: usize,
    /// The last list of tickets for sale, reused for a short while.
    pub list_cache: Arc<ListCache>,
    /// Where the log ends: a read of one aggregate that finds nothing waits (bounded) until
    /// the projection has reached the log's end as of the request. `None`: a miss is a 404.
    pub log_ends: Option<Arc<EndOffsets>>,
    /// The tail behind `GET /api/live`; `None`: the route answers 503.
    pub live: Option<live::LiveFeed>,
}

/// The list of tickets for sale as last read, per namespace: without it every browse reads up
/// to [`QueryState::list_limit`] rows, which a CQL cluster serves far slower than requests
/// arrive. A request that carries a tickets consistency token never gets it, so a client still
/// reads its own writes; others may see a list up to the cache's age old.
pub struct ListCache {
    max_age: Duration,
    /// Namespace, when it was read, and the answer's body as sent.
    entry: tokio::sync::Mutex<Option<(String, Instant, axum::body::Bytes)>>,
}

impl ListCache {
    /// A cache whose lists are reused for at most `max_age` (zero: never).
    pub fn new(max_age: Duration) -> Self {
        Self { max_age, entry: tokio::sync::Mutex::new(None) }
    }
}

impl axum::extract::FromRef<QueryState> for SessionKeys {
    fn from_ref(state: &QueryState) -> Self {
        state.keys.clone()
    }
}

/// The routes, with their state.
pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/api/tickets", get(list_tickets))
        .route("/api/tickets/{id}", get(show_ticket))
        .route("/api/openapi.json", get(openapi))
        .route("/api/orders", get(list_orders))
        .route("/api/orders/{id}", get(show_order))
        .route("/api/live", get(live::live_updates))
        .with_state(state)
}

/// The OpenAPI description of the whole public API.
pub const OPENAPI: &str = include_str!("../openapi/openapi.json");

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(error.to_string())
}

/// Waits (bounded by `deadline`) until the projection serving `read_model` has applied every
/// `(partition, offset)` in `wanted`; returns the namespace and whether it gave up. Woken by
/// the progress of this process's projectors, and looks again every few milliseconds for
/// projectors elsewhere.
async fn namespace_after(
    read_models: &ReadModels,
    read_model: &str,
    wanted: &[(i32, i64)],
    deadline: Instant,
) -> Result<(String, bool), ApiError> {
    let notifier = read_models.progress_notifier();
    loop {
        let progressed = notifier.notified();
        tokio::pin!(progressed);
        // Registered before looking, so progress made while looking is not missed.
        progressed.as_mut().enable();
        let namespace = read_models.current(read_model).await.map_err(unavailable)?;
        let mut reached = true;
        for (partition, offset) in wanted {
            if read_models.progress(&namespace, *partition).await.map_err(unavailable)? <= *offset {
                reached = false;
                break;
            }
        }
        if reached {
            return Ok((namespace, false));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok((namespace, true));
        }
        let _ = tokio::time::timeout((deadline - now).min(OTHER_PROCESS_POLL), progressed).await;
    }
}

/// How often a waiting read looks at progress that no projector of this process reports.
const OTHER_PROCESS_POLL: Duration = Duration::from_millis(25);

/// The `(partition, offset)` of every write to `read_model`'s topic the request's consistency
/// tokens name.
fn written(headers: &HeaderMap, read_model: &str) -> Vec<(i32, i64)> {
    ConsistencyToken::for_topic(headers, read_model).iter().map(|t| (t.partition, t.offset)).collect()
}

/// Resolves the namespace serving `read_model`, after waiting (bounded) for the writes the
/// request's consistency tokens name. Returns whether the wait timed out.
async fn namespace_after_token(
    state: &QueryState,
    read_model: &str,
    headers: &HeaderMap,
) -> Result<(String, bool), ApiError> {
    // A snapshot never changes: nothing to wait for.
    if let Some(namespace) = snapshot_namespace(state, read_model, headers).await? {
        return Ok((namespace, false));
    }
    namespace_after(&state.read_models, read_model, &written(headers, read_model), Instant::now() + CONSISTENCY_WAIT).await
}

/// Reads one aggregate's row; when there is none, waits (bounded) until the projection has
/// reached where the aggregate's partition of the log ended as of the request, then reads
/// again: a client reading back its own acknowledged write without a token gets it, not a 404.
async fn read_or_wait<T, F>(
    state: &QueryState,
    read_model: &str,
    id: &str,
    headers: &HeaderMap,
    read: impl Fn(String) -> F,
) -> Result<(T, bool), ApiError>
where
    F: std::future::Future<Output = Result<Option<T>, ApiError>>,
{
    if let Some(namespace) = snapshot_namespace(state, read_model, headers).await? {
        return read(namespace).await?.map(|row| (row, false)).ok_or(ApiError::NotFound);
    }
    let (namespace, stale) = namespace_after_token(state, read_model, headers).await?;
    if let Some(row) = read(namespace).await? {
        return Ok((row, stale));
    }
    let Some(ends) = &state.log_ends else { return Err(ApiError::NotFound) };
    let topic = ends.topic(read_model);
    let partitions = ends.partition_count(&topic).await.map_err(unavailable)?;
    let partition = platform::ownership::partition_for(id.as_bytes(), partitions);
    let end = ends.end_of(&topic, partition).await.map_err(unavailable)?;
    let (namespace, _) = namespace_after(&state.read_models, read_model, &[(partition, end - 1)], Instant::now() + CONSISTENCY_WAIT).await?;
    read(namespace).await?.map(|row| (row, stale)).ok_or(ApiError::NotFound)
}

fn with_staleness(body: serde_json::Value, stale: bool) -> Response {
    let mut response = Json(body).into_response();
    if stale {
        // The projection did not reach the token in time; say so rather than fail.
        response.headers_mut().insert("x-consistency", HeaderValue::from_static("stale"));
    }
    response
}

#[tracing::instrument(name = "GET /api/tickets", skip_all)]
async fn list_tickets(State(state): State<QueryState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(namespace) = snapshot_namespace(&state, "tickets", &headers).await? {
        return Ok(Json(tickets_for_sale(&state, &namespace).await?).into_response());
    }
    let wanted = written(&headers, "tickets");
    let (namespace, stale) = namespace_after(&state.read_models, "tickets", &wanted, Instant::now() + CONSISTENCY_WAIT).await?;
    let cache = &state.list_cache;
    if !wanted.is_empty() || cache.max_age.is_zero() {
        return Ok(with_staleness(tickets_for_sale(&state, &namespace).await?, stale));
    }
    // Held while reading: concurrent misses wait for one read instead of each making theirs.
    let mut entry = cache.entry.lock().await;
    if let Some((cached_namespace, at, body)) = entry.as_ref()
        && *cached_namespace == namespace
        && at.elapsed() < cache.max_age
    {
        return Ok(json_body(body.clone()));
    }
    let list = tickets_for_sale(&state, &namespace).await?;
    let body = axum::body::Bytes::from(serde_json::to_vec(&list).map_err(|e| ApiError::Unexpected(e.into()))?);
    *entry = Some((namespace, Instant::now(), body.clone()));
    Ok(json_body(body))
}

/// A JSON answer whose body is already serialised.
fn json_body(body: axum::body::Bytes) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The [`QueryState::list_limit`] most recently listed tickets for sale, oldest first (the
/// reference app's order), as the API shows them: whole weeks from the newest back, each
/// week's shards read at once.
async fn tickets_for_sale(state: &QueryState, namespace: &str) -> Result<serde_json::Value, ApiError> {
    let weeks = scan_cells(state, namespace, FOR_SALE_WEEKS_TABLE, FOR_SALE_WEEKS_PARTITION).await?;
    let mut newest_first: Vec<Vec<TicketRow>> = Vec::new();
    let mut count = 0;
    for week in weeks.iter().rev().map(|cell| &cell.clustering_key) {
        let week: i64 = week
            .parse()
            .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("corrupt week {week:?} in {FOR_SALE_WEEKS_TABLE}")))?;
        let partitions: Vec<String> = (0..FOR_SALE_SHARDS).map(|shard| shard_partition(week, shard)).collect();
        let shards = futures::future::try_join_all(
            partitions.iter().map(|partition| scan_all::<TicketRow>(state, namespace, FOR_SALE_TABLE, partition)),
        )
        .await?;
        let mut rows: Vec<TicketRow> = shards.into_iter().flatten().collect();
        rows.sort_by(|a, b| a.list_key.cmp(&b.list_key));
        count += rows.len();
        newest_first.push(rows);
        if count >= state.list_limit {
            break;
        }
    }
    let mut rows: Vec<TicketRow> = newest_first.into_iter().rev().flatten().collect();
    let excess = rows.len().saturating_sub(state.list_limit);
    rows.drain(..excess);
    Ok(serde_json::Value::Array(rows.iter().map(TicketRow::to_api_json).collect()))
}

/// Every cell of a partition, page by page.
async fn scan_cells(state: &QueryState, namespace: &str, table: &str, partition: &str) -> Result<Vec<Cell>, ApiError> {
    let store = state.read_models.store();
    let mut cells = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.scan(namespace, table, partition, after.as_deref(), 500).await.map_err(unavailable)?;
        cells.extend(page.cells);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(cells),
        }
    }
}

/// Every row of a partition, decoded.
async fn scan_all<T: serde::de::DeserializeOwned>(
    state: &QueryState,
    namespace: &str,
    table: &str,
    partition: &str,
) -> Result<Vec<T>, ApiError> {
    scan_cells(state, namespace, table, partition)
        .await?
        .iter()
        .map(|cell| {
            serde_json::from_slice(&cell.value).map_err(|e| ApiError::Unexpected(anyhow::anyhow!("corrupt row in {table}: {e}")))
        })
        .collect()
}

#[tracing::instrument(name = "GET /api/orders", skip_all)]
async fn list_orders(
    State(state): State<QueryState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = user.ok_or(ApiError::NotAuthorized)?;
    let (namespace, stale) = namespace_after_token(&state, "orders", &headers).await?;
    let rows: Vec<OrderRow> = scan_all(&state, &namespace, ORDERS_BY_USER_TABLE, &user.id).await?;
    let orders = rows.iter().map(OrderRow::to_api_json).collect();
    Ok(with_staleness(serde_json::Value::Array(orders), stale))
}

#[tracing::instrument(name = "GET /api/orders/{id}", skip_all, fields(order_id = %id))]
async fn show_order(
    State(state): State<QueryState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = user.ok_or(ApiError::NotAuthorized)?;
    let store = state.read_models.store().clone();
    let (row, stale) = read_or_wait(&state, "orders", &id, &headers, |namespace| {
        let (store, id) = (store.clone(), id.clone());
        async move { get_order(store.as_ref(), &namespace, &id).await.map_err(unavailable) }
    })
    .await?;
    if row.user_id != user.id {
        return Err(ApiError::NotAuthorized);
    }
    Ok(with_staleness(row.to_api_json(), stale))
}

#[tracing::instrument(name = "GET /api/tickets/{id}", skip_all, fields(ticket_id = %id))]
async fn show_ticket(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = state.read_models.store().clone();
    let (row, stale) = read_or_wait(&state, "tickets", &id, &headers, |namespace| {
        let (store, id) = (store.clone(), id.clone());
        async move { get_ticket(store.as_ref(), &namespace, &id).await.map_err(unavailable) }
    })
    .await?;
    Ok(with_staleness(row.to_api_json(), stale))
}
