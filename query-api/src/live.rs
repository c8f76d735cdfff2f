//! Live updates: `GET /api/live`, a Server-Sent Events stream of the changes a signed-in user
//! may see (every ticket listed, changed, reserved or sold; the user's own orders), each as the
//! same view the read routes answer, read once the projection has applied the change.
//!
//! One [`LiveFeed`] per process tails the tickets and orders topics from their end and keeps
//! the most recent changes. An event's id names, for every partition of both topics, the last
//! offset the stream has passed (`tickets:0:41,…,orders:5:17`, the consistency token's
//! syntax), so a reconnect to any replica resumes with `Last-Event-ID`: the changes after
//! it are replayed when they are still held, and a `reset` event tells the client to read
//! its page again when they are not.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use platform::http::{ApiError, ConsistencyToken};
use platform::log::{LogConfig, LogError, LogRecord, TopicReader};
use platform::projection::ReadModels;
use platform::session::CurrentUser;
use projectors::orders::get_order;
use projectors::tickets::get_ticket;
use tokio::sync::{broadcast, watch};

use crate::{QueryState, namespace_after, unavailable};

/// The read models whose changes are streamed, by topic short name.
const LIVE_MODELS: [&str; 2] = ["tickets", "orders"];

/// Most records the feed reads before looking them up together.
const BATCH: usize = 256;

/// How long the feed waits for a projection to apply a change before reading what is there.
const PROJECTION_WAIT: Duration = Duration::from_secs(10);

/// Limits of the live streams.
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    /// Open streams per user at most (`LIVE_STREAMS_PER_USER`).
    pub per_user: usize,
    /// Open streams per process at most (`LIVE_STREAMS_MAX`).
    pub total: usize,
    /// Changes kept for resuming streams (`LIVE_REPLAY_CHANGES`).
    pub replay: usize,
}

impl Default for LiveLimits {
    fn default() -> Self {
        Self { per_user: 5, total: 10_000, replay: 10_000 }
    }
}

/// What changed: the view of one ticket or one order after a write to it.
#[derive(Debug)]
pub struct LiveChange {
    /// Topic short name (`tickets`, `orders`).
    pub read_model: &'static str,
    /// Partition of the write.
    pub partition: i32,
    /// Offset of the write.
    pub offset: i64,
    /// The user the change is shown to; `None`: every signed-in user (tickets).
    pub audience: Option<String>,
    /// The view, as `GET /api/tickets/{id}` or `GET /api/orders/{id}` answers it.
    pub view: serde_json::Value,
}

/// Per partition of the streamed topics, an offset.
type Positions = BTreeMap<(&'static str, i32), i64>;

struct Retained {
    changes: VecDeque<Arc<LiveChange>>,
    /// Per partition, the highest offset whose change a resuming stream can no longer get
    /// (dropped from `changes`, skipped while nobody listened, or before the feed started).
    lost_through: Positions,
    /// Per partition, the last offset the feed has passed.
    head: Positions,
}

/// The process's tail of the streamed topics, shared by every stream.
#[derive(Clone)]
pub struct LiveFeed {
    inner: Arc<FeedInner>,
}

struct FeedInner {
    limits: LiveLimits,
    retained: Mutex<Retained>,
    changes: broadcast::Sender<Arc<LiveChange>>,
    open: Mutex<HashMap<String, usize>>,
    /// Turns true when the feed stops: every stream ends.
    stopped: watch::Sender<bool>,
}

impl LiveFeed {
    /// A feed holding nothing yet; [`LiveFeed::run`] fills it.
    pub fn new(limits: LiveLimits) -> Self {
        let (changes, _) = broadcast::channel(limits.replay.max(1024));
        let (stopped, _) = watch::channel(false);
        Self {
            inner: Arc::new(FeedInner {
                limits,
                retained: Mutex::new(Retained {
                    changes: VecDeque::new(),
                    lost_through: Positions::new(),
                    head: Positions::new(),
                }),
                changes,
                open: Mutex::new(HashMap::new()),
                stopped,
            }),
        }
    }

    /// Tails the topics from their end until `shutdown`, turning each write into a change.
    pub async fn run(
        self,
        config: LogConfig,
        read_models: ReadModels,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), LogError> {
        let mut readers = Vec::new();
        for read_model in LIVE_MODELS {
            let reader = TopicReader::from_end(&config, &config.topic(read_model))?;
            let mut retained = self.inner.retained.lock().expect("feed lock");
            for (partition, end) in reader.end_offsets() {
                retained.lost_through.insert((read_model, partition), end - 1);
                retained.head.insert((read_model, partition), end - 1);
            }
            drop(retained);
            readers.push((read_model, reader));
        }
        let result = loop {
            let batch = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break Ok(()),
                batch = next_batch(&readers) => batch,
            };
            match batch {
                Ok(records) => self.apply(&read_models, records).await,
                Err(error) => break Err(error),
            }
        };
        self.inner.stopped.send_replace(true);
        result
    }

    /// Looks up the rows `records` wrote (once per aggregate) after their projection has
    /// applied them, and publishes them in log order.
    async fn apply(&self, read_models: &ReadModels, records: Vec<(&'static str, LogRecord)>) {
        if self.inner.changes.receiver_count() == 0 {
            // Nobody listens: skip the reads, and have resuming streams start over.
            let mut retained = self.inner.retained.lock().expect("feed lock");
            for (read_model, record) in &records {
                let key = (*read_model, record.position.partition);
                retained.lost_through.insert(key, record.position.offset);
                retained.head.insert(key, record.position.offset);
            }
            return;
        }
        // The last write to each aggregate stands for the batch's others.
        let mut last: HashMap<(&'static str, Vec<u8>), usize> = HashMap::new();
        for (index, (read_model, record)) in records.iter().enumerate() {
            if let Some(key) = &record.key {
                last.insert((*read_model, key.clone()), index);
            }
        }
        let mut wanted: BTreeMap<&'static str, BTreeMap<i32, i64>> = BTreeMap::new();
        for (read_model, record) in &records {
            let ends = wanted.entry(*read_model).or_default();
            let end = ends.entry(record.position.partition).or_insert(record.position.offset);
            *end = (*end).max(record.position.offset);
        }
        let deadline = Instant::now() + PROJECTION_WAIT;
        let mut namespaces = HashMap::new();
        for (read_model, ends) in &wanted {
            let ends: Vec<(i32, i64)> = ends.iter().map(|(p, o)| (*p, *o)).collect();
            match namespace_after(read_models, read_model, &ends, deadline).await {
                Ok((namespace, stale)) => {
                    if stale {
                        tracing::warn!(message = "A live change is shown before its projection applied it.", read_model);
                    }
                    namespaces.insert(*read_model, namespace);
                }
                Err(error) => tracing::warn!(message = "Live changes not looked up.", read_model, %error),
            }
        }
        let lookups = records.iter().enumerate().map(|(index, (read_model, record))| {
            let namespace = namespaces.get(read_model).cloned();
            let is_last = record.key.as_ref().is_some_and(|key| last.get(&(*read_model, key.clone())) == Some(&index));
            async move {
                let (Some(namespace), true, Some(key)) = (namespace, is_last, &record.key) else { return None };
                let id = std::str::from_utf8(key).ok()?;
                let store = read_models.store();
                let looked_up = match *read_model {
                    "tickets" => get_ticket(store.as_ref(), &namespace, id).await.map(|row| row.map(|r| (None, r.to_api_json()))),
                    _ => get_order(store.as_ref(), &namespace, id)
                        .await
                        .map(|row| row.map(|r| (Some(r.user_id.clone()), r.to_api_json()))),
                };
                match looked_up {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::warn!(message = "A live change was not looked up.", read_model, id, %error);
                        None
                    }
                }
            }
        });
        let views = futures::future::join_all(lookups).await;
        let mut retained = self.inner.retained.lock().expect("feed lock");
        for ((read_model, record), view) in records.into_iter().zip(views) {
            let key = (read_model, record.position.partition);
            retained.head.insert(key, record.position.offset);
            let Some((audience, view)) = view else { continue };
            let change = Arc::new(LiveChange {
                read_model,
                partition: record.position.partition,
                offset: record.position.offset,
                audience,
                view,
            });
            retained.changes.push_back(change.clone());
            while retained.changes.len() > self.inner.limits.replay {
                let Some(dropped) = retained.changes.pop_front() else { break };
                retained.lost_through.insert((dropped.read_model, dropped.partition), dropped.offset);
            }
            // Sent under the lock: a stream that subscribes while holding it sees each
            // change either retained or sent, never neither.
            let _ = self.inner.changes.send(change);
        }
    }

    fn admit(&self, user: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.inner.open.lock().expect("streams lock");
        let total: usize = open.values().sum();
        let mine = open.get(user).copied().unwrap_or(0);
        if mine >= self.inner.limits.per_user || total >= self.inner.limits.total {
            return Err(ApiError::TooManyRequests { retry_after_seconds: 5 });
        }
        open.insert(user.to_string(), mine + 1);
        Ok(StreamSlot { feed: self.clone(), user: user.to_string() })
    }
}

/// One open stream's place in the per-user count, given back when the stream is dropped.
struct StreamSlot {
    feed: LiveFeed,
    user: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.feed.inner.open.lock().expect("streams lock");
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// The next records of any of the topics: waits for one, then takes what else has arrived.
async fn next_batch(readers: &[(&'static str, TopicReader)]) -> Result<Vec<(&'static str, LogRecord)>, LogError> {
    let first = futures::future::select_all(readers.iter().map(|(read_model, reader)| {
        Box::pin(async move { reader.next().await.map(|record| (*read_model, record)) })
    }))
    .await
    .0?;
    let mut batch = vec![first];
    for (read_model, reader) in readers {
        while batch.len() < BATCH {
            match reader.next_arrived() {
                Some(record) => batch.push((*read_model, record?)),
                None => break,
            }
        }
    }
    Ok(batch)
}

/// Parses a `Last-Event-ID`: the offsets it names per partition; `None` when malformed.
fn parse_positions(value: &str) -> Option<Positions> {
    let mut positions = Positions::new();
    for part in value.split(',').filter(|p| !p.trim().is_empty()) {
        let token = ConsistencyToken::parse(part)?;
        let read_model = LIVE_MODELS.iter().find(|m| **m == token.topic)?;
        positions.insert((read_model, token.partition), token.offset);
    }
    Some(positions)
}

fn event_id(positions: &Positions) -> String {
    positions
        .iter()
        .map(|((read_model, partition), offset)| format!("{read_model}:{partition}:{offset}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Where a stream starts: the changes to replay, then live ones.
struct Start {
    replay: Vec<Arc<LiveChange>>,
    reset: bool,
    cursor: Positions,
    live: broadcast::Receiver<Arc<LiveChange>>,
}

fn start(feed: &LiveFeed, resume: Option<Positions>) -> Start {
    let retained = feed.inner.retained.lock().expect("feed lock");
    let live = feed.inner.changes.subscribe();
    let Some(from) = resume else {
        return Start { replay: Vec::new(), reset: false, cursor: retained.head.clone(), live };
    };
    let missed = retained
        .lost_through
        .iter()
        .any(|(partition, lost)| from.get(partition).copied().unwrap_or(-1) < *lost);
    if missed {
        return Start { replay: Vec::new(), reset: true, cursor: retained.head.clone(), live };
    }
    let replay = retained
        .changes
        .iter()
        .filter(|c| from.get(&(c.read_model, c.partition)).is_none_or(|seen| c.offset > *seen))
        .cloned()
        .collect();
    // Partitions the client's id does not name start where it stood (nothing lost there).
    let mut cursor = retained.lost_through.clone();
    cursor.extend(from);
    Start { replay, reset: false, cursor, live }
}

struct LiveStream {
    user: String,
    cursor: Positions,
    pending: VecDeque<Event>,
    replay: VecDeque<Arc<LiveChange>>,
    live: broadcast::Receiver<Arc<LiveChange>>,
    stopped: watch::Receiver<bool>,
    _slot: StreamSlot,
}

impl LiveStream {
    /// The event for `change` when this stream shows it (advancing the cursor either way).
    fn show(&mut self, change: &LiveChange) -> Option<Event> {
        let seen = self.cursor.entry((change.read_model, change.partition)).or_insert(-1);
        if change.offset <= *seen {
            return None;
        }
        *seen = change.offset;
        if change.audience.as_ref().is_some_and(|audience| *audience != self.user) {
            return None;
        }
        let name = if change.read_model == "tickets" { "ticket" } else { "order" };
        Some(Event::default().event(name).id(event_id(&self.cursor)).data(change.view.to_string()))
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if let Some(change) = self.replay.pop_front() {
                if let Some(event) = self.show(&change) {
                    return Some(event);
                }
                continue;
            }
            let received = tokio::select! {
                _ = self.stopped.wait_for(|s| *s) => return None,
                received = self.live.recv() => received,
            };
            match received {
                Ok(change) => {
                    if let Some(event) = self.show(&change) {
                        return Some(event);
                    }
                }
                // Fell too far behind: the client reads its page again.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.live = self.live.resubscribe();
                    return Some(Event::default().event("reset").data("{}"));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// `GET /api/live`: the signed-in user's stream of changes.
#[tracing::instrument(name = "GET /api/live", skip_all)]
pub(crate) async fn live_updates(
    State(state): State<QueryState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = user.ok_or(ApiError::NotAuthorized)?;
    let feed = state.live.clone().ok_or_else(|| unavailable("live updates are not running in this process"))?;
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(value.to_str().ok().and_then(parse_positions).ok_or_else(|| {
            ApiError::BadRequest("Last-Event-ID is not an id this stream sent".into())
        })?),
    };
    let slot = feed.admit(&user.id)?;
    let Start { replay, reset, cursor, live } = start(&feed, resume);
    let mut pending = VecDeque::new();
    pending.push_back(Event::default().event("ready").id(event_id(&cursor)).data("{}"));
    if reset {
        pending.push_back(Event::default().event("reset").data("{}"));
    }
    let stream = LiveStream {
        user: user.id,
        cursor,
        pending,
        replay: replay.into(),
        live,
        stopped: feed.inner.stopped.subscribe(),
        _slot: slot,
    };
    let mut response = Sse::new(into_stream(stream)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response();
    // Proxies that buffer answers (nginx, ingress-nginx) would hold events back.
    response.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(response)
}

fn into_stream(stream: LiveStream) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(stream, |mut stream| async move {
        let event = stream.next_event().await?;
        Some((Ok(event), stream))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_reads_back_as_the_positions_it_names() {
        let positions = Positions::from([(("tickets", 0), 41), (("tickets", 1), -1), (("orders", 5), 17)]);
        assert_eq!(parse_positions(&event_id(&positions)), Some(positions));
        assert_eq!(parse_positions("payments:0:1"), None, "not a streamed topic");
        assert_eq!(parse_positions("tickets:x:1"), None);
    }

    fn change(read_model: &'static str, partition: i32, offset: i64) -> Arc<LiveChange> {
        Arc::new(LiveChange { read_model, partition, offset, audience: None, view: serde_json::json!({}) })
    }

    fn feed_holding(changes: &[Arc<LiveChange>], lost_through: Positions) -> LiveFeed {
        let feed = LiveFeed::new(LiveLimits::default());
        let mut retained = feed.inner.retained.lock().unwrap();
        retained.changes = changes.iter().cloned().collect();
        retained.head = lost_through.clone();
        for c in changes {
            retained.head.insert((c.read_model, c.partition), c.offset);
        }
        retained.lost_through = lost_through;
        drop(retained);
        feed
    }

    #[test]
    fn a_resume_replays_what_came_after_its_id_or_resets_when_that_is_gone() {
        let lost = Positions::from([(("tickets", 0), 9), (("orders", 0), 4)]);
        let feed = feed_holding(&[change("tickets", 0, 10), change("orders", 0, 5), change("tickets", 0, 11)], lost);
        let after_first = Positions::from([(("tickets", 0), 10), (("orders", 0), 4)]);
        let resumed = start(&feed, Some(after_first));
        assert!(!resumed.reset);
        let replayed: Vec<_> = resumed.replay.iter().map(|c| (c.read_model, c.offset)).collect();
        assert_eq!(replayed, vec![("orders", 5), ("tickets", 11)]);

        let too_old = Positions::from([(("tickets", 0), 8), (("orders", 0), 4)]);
        assert!(start(&feed, Some(too_old)).reset, "offset 9 of tickets:0 is no longer held");
        let unnamed_partition = Positions::from([(("tickets", 0), 11)]);
        assert!(start(&feed, Some(unnamed_partition)).reset);
        assert!(!start(&feed, None).reset);
    }

    #[test]
    fn a_user_gets_a_bounded_number_of_streams_and_each_closed_one_back() {
        let feed = LiveFeed::new(LiveLimits { per_user: 2, total: 3, replay: 10 });
        let a1 = feed.admit("a").unwrap();
        let _a2 = feed.admit("a").unwrap();
        assert!(matches!(feed.admit("a"), Err(ApiError::TooManyRequests { .. })));
        let _b1 = feed.admit("b").unwrap();
        assert!(feed.admit("c").is_err(), "the process's bound");
        drop(a1);
        assert!(feed.admit("a").is_ok());
    }
}
