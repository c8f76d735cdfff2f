//! The command pipeline: decide against the aggregate's state, append, and answer only after the
//! event has been read back from the log as valid at its position (the echo).
//!
//! A command that decides several events appends them in one Kafka transaction whose
//! `transactional.id` belongs to the aggregate's partition ([`writer_transactional_id`]), so no
//! `read_committed` reader ever sees some of them without the others, and a newer writer of the
//! partition fences an older one. A writer that dies mid-transaction holds the partition's
//! readers back until the broker aborts it ([`crate::log::TRANSACTION_TIMEOUT`]).
//!
//! Every instance tails all partitions of its topic and folds every aggregate with the arbiter
//! rule. Conflicting commands on one instance are serialised per aggregate; across instances
//! the log decides: of two events claiming the same version, the first in partition order wins
//! and the other is ignored by every reader, so its writer answers with a conflict (or, when the
//! client gave no expected version, decides again on the new state).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::Instrument;
use uuid::Uuid;

use crate::aggregate::{Aggregate, Envelope, EventMetadata};
use crate::arbiter::{Head, Verdict};
use crate::codec::{CodecError, EventCodec, waiting_for_registry};
use crate::log::{DeadLetters, LogConfig, LogError, LogPosition, LogProducer, LogRecord, OutgoingRecord, TopicReader, TransactionalProducer};
use crate::ownership::partition_for;

/// How long a command may take, append and echo included, before the client gets a 503.
pub const COMMAND_DEADLINE: Duration = Duration::from_millis(4500);

/// How often a command is decided again after losing its version to another writer.
const MAX_ATTEMPTS: usize = 3;

/// A command with everything the pipeline needs besides the command itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CommandRequest<C> {
    /// The aggregate the command targets.
    pub aggregate_id: String,
    /// Idempotency key: a repeat of an already applied command returns its first outcome.
    pub command_id: String,
    /// Optimistic concurrency: refuse unless the aggregate is at this version.
    pub expected_version: Option<i64>,
    /// Correlation id of the client request.
    pub correlation_id: String,
    /// Event that caused this command (process managers).
    pub causation_id: Option<String>,
    /// The command (its decision time is the owner's clock, taken by the pipeline).
    pub command: C,
}

impl<C> CommandRequest<C> {
    /// A command a client sent now: a fresh correlation id, no cause, no expected version.
    pub fn from_client(aggregate_id: &str, command_id: String, command: C) -> Self {
        Self {
            aggregate_id: aggregate_id.to_string(),
            command_id,
            expected_version: None,
            correlation_id: Uuid::new_v4().to_string(),
            causation_id: None,
            command,
        }
    }

    /// Refuse unless the aggregate is at `version`.
    pub fn expecting(mut self, version: Option<i64>) -> Self {
        self.expected_version = version;
        self
    }
}

/// The result of an applied command.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Outcome<A> {
    /// State of the aggregate right after the command.
    pub state: A,
    /// Its version.
    pub version: i64,
    /// Where the command's last event landed; `None` when it produced no event.
    pub position: Option<LogPosition>,
}

/// Why a command got no outcome.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The domain refused it.
    #[error(transparent)]
    Rejected(E),
    /// The aggregate is not at the expected version, or another writer won every attempt.
    #[error("Version conflict: expected {expected}, the aggregate is at {actual}")]
    Conflict {
        /// The version the client expected.
        expected: i64,
        /// The version the aggregate is at.
        actual: i64,
    },
    /// The log or the registry is unreachable, or the command ran past its deadline.
    #[error("Unavailable: {0}")]
    Unavailable(String),
    /// The pipeline has not caught up with the log yet.
    #[error("The command side is still catching up with the log")]
    NotReady,
    /// An event of the aggregate cannot be read, so its state is unknown: it takes no command
    /// until an operator resolves the parked record (`ticketing dead-letters`).
    #[error("{0}")]
    Blocked(String),
}

impl<E: std::error::Error + 'static> From<CodecError> for CommandError<E> {
    fn from(error: CodecError) -> Self {
        CommandError::Unavailable(error.to_string())
    }
}

impl<E: std::error::Error + 'static> From<LogError> for CommandError<E> {
    fn from(error: LogError) -> Self {
        CommandError::Unavailable(error.to_string())
    }
}

struct Slot<A: Aggregate> {
    state: A,
    head: Head,
    processed: HashMap<String, Outcome<A>>,
    /// Why the aggregate takes no command: one of its events could not be read.
    blocked: Option<String>,
}

impl<A: Aggregate> Default for Slot<A> {
    fn default() -> Self {
        Self { state: A::default(), head: Head::default(), processed: HashMap::new(), blocked: None }
    }
}

struct Echo {
    verdict: Verdict,
    position: LogPosition,
}

struct Inner<A: Aggregate> {
    codec: Arc<dyn EventCodec<A::Event>>,
    producer: LogProducer,
    config: LogConfig,
    partitions: i32,
    /// Per partition, the producer that appends commands of several events atomically.
    transactional: Mutex<HashMap<i32, Arc<TransactionalProducer>>>,
    slots: Mutex<HashMap<String, Slot<A>>>,
    dead_letters: DeadLetters,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    echoes: EchoSenders,
    ready: watch::Sender<bool>,
}

/// Runs the commands of one aggregate type.
pub struct CommandPipeline<A: Aggregate> {
    inner: Arc<Inner<A>>,
    tail: tokio::task::JoinHandle<()>,
}

impl<A: Aggregate> Drop for CommandPipeline<A> {
    fn drop(&mut self) {
        self.tail.abort();
    }
}

impl<A: Aggregate> CommandPipeline<A> {
    /// Starts tailing the codec's topic from the beginning; commands are accepted once the
    /// tail has reached the end offsets seen at start.
    pub fn start(config: &LogConfig, codec: Arc<dyn EventCodec<A::Event>>) -> Result<Self, LogError> {
        let producer = LogProducer::new(config)?;
        let reader = TopicReader::from_beginning(config, codec.topic())?;
        let dead_letters = DeadLetters::with_producer(config, producer.clone());
        let (ready, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            codec,
            producer,
            config: config.clone(),
            partitions: reader.partitions().len() as i32,
            transactional: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            dead_letters,
            locks: Mutex::new(HashMap::new()),
            echoes: Mutex::new(HashMap::new()),
            ready,
        });
        let tail = tokio::spawn(tail_log(inner.clone(), reader));
        Ok(Self { inner, tail })
    }

    /// Partitions of the aggregate's topic.
    pub fn partitions(&self) -> i32 {
        self.inner.partitions
    }

    /// True once the state has caught up with the log as it was at start.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits until [`CommandPipeline::is_ready`].
    pub async fn wait_ready(&self) {
        let mut ready = self.inner.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// The current state and version of an aggregate (version 0: it does not exist).
    pub fn state(&self, aggregate_id: &str) -> (A, i64) {
        let slots = self.inner.slots.lock().expect("slots lock");
        slots
            .get(aggregate_id)
            .map_or_else(|| (A::default(), 0), |s| (s.state.clone(), s.head.version))
    }

    /// The aggregates whose state `keep` selects, with their ids (for workers that look after
    /// aggregates in some state, such as payments left in flight by a crash).
    pub fn select(&self, keep: impl Fn(&A) -> bool) -> Vec<(String, A)> {
        let slots = self.inner.slots.lock().expect("slots lock");
        slots.iter().filter(|(_, slot)| keep(&slot.state)).map(|(id, slot)| (id.clone(), slot.state.clone())).collect()
    }

    /// Decides the command, appends its events and answers after their echo.
    pub async fn execute(
        &self,
        request: CommandRequest<A::Command>,
    ) -> Result<Outcome<A>, CommandError<A::Error>> {
        if !self.is_ready() {
            return Err(CommandError::NotReady);
        }
        let lock = {
            let mut locks = self.inner.locks.lock().expect("locks lock");
            locks.entry(request.aggregate_id.clone()).or_default().clone()
        };
        tokio::time::timeout(crate::deadline::remaining(COMMAND_DEADLINE), async {
            let _guard = lock.lock().await;
            self.execute_serialised(&request).await
        })
        .await
        .unwrap_or_else(|_| Err(CommandError::Unavailable("the command timed out".into())))
    }

    async fn execute_serialised(
        &self,
        request: &CommandRequest<A::Command>,
    ) -> Result<Outcome<A>, CommandError<A::Error>> {
        let inner = &self.inner;
        let mut actual = 0;
        for _ in 0..MAX_ATTEMPTS {
            let (state, version) = {
                let slots = inner.slots.lock().expect("slots lock");
                match slots.get(&request.aggregate_id) {
                    Some(slot) => {
                        if let Some(outcome) = slot.processed.get(&request.command_id) {
                            return Ok(outcome.clone());
                        }
                        if let Some(reason) = &slot.blocked {
                            return Err(CommandError::Blocked(reason.clone()));
                        }
                        (slot.state.clone(), slot.head.version)
                    }
                    None => (A::default(), 0),
                }
            };
            actual = version;
            // One clock: time enters the decision here, at the aggregate's owner.
            let now = chrono::Utc::now().timestamp_millis();
            // Decide first, so that "not found" or "not yours" wins over a stale version.
            let events = state.decide(&request.command, now).map_err(CommandError::Rejected)?;
            if let Some(expected) = request.expected_version
                && expected != version
            {
                return Err(CommandError::Conflict { expected, actual: version });
            }
            if events.is_empty() {
                return Ok(Outcome { state, version, position: None });
            }
            let count = events.len() as i32;
            let envelopes: Vec<Envelope<A::Event>> = events
                .into_iter()
                .enumerate()
                .map(|(i, event)| Envelope {
                    metadata: EventMetadata {
                        event_id: Uuid::new_v4(),
                        aggregate_id: request.aggregate_id.clone(),
                        aggregate_version: version + 1 + i as i64,
                        command_id: request.command_id.clone(),
                        command_event_index: i as i32,
                        command_event_count: count,
                        occurred_at: now,
                        correlation_id: request.correlation_id.clone(),
                        causation_id: request.causation_id.clone(),
                    },
                    event,
                })
                .collect();
            let echoes = self.append_and_await_echoes(&envelopes).await?;
            let mut won = true;
            for (envelope, echo) in envelopes.iter().zip(&echoes) {
                if echo.verdict != Verdict::Valid {
                    tracing::info!(
                        message = "Lost a version to another writer.",
                        aggregate_id = %request.aggregate_id,
                        version = envelope.metadata.aggregate_version,
                        partition = echo.position.partition,
                        offset = echo.position.offset,
                    );
                    won = false;
                    break;
                }
            }
            if won {
                let slots = inner.slots.lock().expect("slots lock");
                if let Some(outcome) =
                    slots.get(&request.aggregate_id).and_then(|s| s.processed.get(&request.command_id))
                {
                    return Ok(outcome.clone());
                }
            }
            if let Some(expected) = request.expected_version {
                let (_, now) = self.state(&request.aggregate_id);
                return Err(CommandError::Conflict { expected, actual: now });
            }
        }
        Err(CommandError::Conflict { expected: actual, actual: self.state(&request.aggregate_id).1 })
    }

    /// Appends the events of one command and answers with their echoes. Several events go in
    /// one transaction, so that no `read_committed` reader ever sees some without the others;
    /// a single event needs none and goes through the idempotent producer.
    async fn append_and_await_echoes(
        &self,
        envelopes: &[Envelope<A::Event>],
    ) -> Result<Vec<Echo>, CommandError<A::Error>> {
        let inner = &self.inner;
        let topic = inner.codec.topic();
        let first = &envelopes[0].metadata;
        let key = first.aggregate_id.as_bytes();
        let mut encoded = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            encoded.push(inner.codec.encode(envelope).await?);
        }
        let span = tracing::info_span!(
            "append",
            topic,
            aggregate_id = %first.aggregate_id,
            version = first.aggregate_version,
            events = envelopes.len(),
        );
        let trace = span.in_scope(crate::telemetry::current_trace_headers);
        let headers = |envelope: &Envelope<A::Event>| {
            let mut headers: Vec<(&str, &[u8])> = vec![("event_type", inner.codec.event_type(&envelope.event).as_bytes())];
            headers.extend(trace.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
            headers
        };
        // Registered before the append (the echo may come back before it returns); removed
        // when this future ends in any way, the deadline firing mid-wait included.
        let waiting = PendingEchoes::register(&inner.echoes, topic, envelopes.iter().map(|e| e.metadata.event_id));
        let appended = if let [envelope] = envelopes {
            inner.producer.append(topic, key, &encoded[0], &headers(envelope)).instrument(span).await.map(|_| ())
        } else {
            let partition = partition_for(key, inner.partitions);
            let records: Vec<OutgoingRecord<'_>> = envelopes
                .iter()
                .zip(&encoded)
                .map(|(envelope, bytes)| OutgoingRecord { topic, partition, key, payload: bytes, headers: headers(envelope) })
                .collect();
            inner.transactional_producer(partition).append_all(&records).instrument(span).await.map(|_| ())
        };
        appended?;
        waiting.wait().await
    }
}

type EchoSenders = Mutex<HashMap<Uuid, oneshot::Sender<Echo>>>;

/// The echoes one command waits for; dropping it forgets those still pending.
struct PendingEchoes<'a> {
    senders: &'a EchoSenders,
    topic: &'a str,
    ids: Vec<Uuid>,
    receivers: Vec<oneshot::Receiver<Echo>>,
}

impl<'a> PendingEchoes<'a> {
    fn register(senders: &'a EchoSenders, topic: &'a str, ids: impl Iterator<Item = Uuid>) -> Self {
        let mut map = senders.lock().expect("echoes lock");
        let mut waiting = Self { senders, topic, ids: Vec::new(), receivers: Vec::new() };
        for id in ids {
            let (tx, rx) = oneshot::channel();
            map.insert(id, tx);
            waiting.ids.push(id);
            waiting.receivers.push(rx);
        }
        drop(map);
        crate::metrics::METRICS.echoes_pending(topic, waiting.ids.len() as i64);
        waiting
    }

    async fn wait<E: std::error::Error + 'static>(mut self) -> Result<Vec<Echo>, CommandError<E>> {
        let mut echoes = Vec::with_capacity(self.receivers.len());
        for rx in std::mem::take(&mut self.receivers) {
            echoes.push(rx.await.map_err(|_| CommandError::Unavailable("the log tail stopped".into()))?);
        }
        Ok(echoes)
    }
}

impl Drop for PendingEchoes<'_> {
    fn drop(&mut self) {
        let mut map = self.senders.lock().expect("echoes lock");
        for id in &self.ids {
            map.remove(id);
        }
        crate::metrics::METRICS.echoes_pending(self.topic, -(self.ids.len() as i64));
    }
}

/// What the command side knows of its topic's unreadable records: which an operator chose to
/// skip, and which it parked already (every instance reads them all; each parks one once).
struct PoisonBook {
    consumer: String,
    skipped: HashSet<(i32, i64)>,
    parked: HashSet<(i32, i64)>,
}

impl PoisonBook {
    async fn load(config: &LogConfig, topic: &str) -> Self {
        let consumer = format!("{topic}.commands");
        let mut book = Self { consumer, skipped: HashSet::new(), parked: HashSet::new() };
        loop {
            match DeadLetters::read_all(config).await {
                Ok(entries) => {
                    for entry in entries.into_iter().filter(|e| e.topic == topic) {
                        match entry.resolution.as_deref() {
                            Some("skip") => book.skipped.insert((entry.partition, entry.offset)),
                            None if entry.consumer == book.consumer => book.parked.insert((entry.partition, entry.offset)),
                            _ => false,
                        };
                    }
                    return book;
                }
                Err(error) => {
                    tracing::warn!(message = "Failed to read the dead-letter topic; retrying.", %error);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// An undecodable record of the aggregate keyed by it: unless an operator skipped it, the
    /// aggregate takes no command (its state without the event is a guess), and the record
    /// is parked with the reason.
    async fn unreadable<A: Aggregate>(&mut self, inner: &Inner<A>, record: &LogRecord, reason: &str) {
        let at = (record.position.partition, record.position.offset);
        if self.skipped.contains(&at) {
            tracing::info!(message = "Ignored an unreadable record an operator skipped.", partition = at.0, offset = at.1);
            return;
        }
        let aggregate_id = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
        tracing::error!(message = "An aggregate's event cannot be read; it takes no command.", %aggregate_id, partition = at.0, offset = at.1, %reason);
        let blocked = format!(
            "{aggregate_id} takes no command: its event at {}/{}@{} cannot be read ({reason}); it is parked in the \
             dead-letter topic for an operator (ticketing dead-letters)",
            record.topic, at.0, at.1
        );
        inner.slots.lock().expect("slots lock").entry(aggregate_id).or_default().blocked = Some(blocked);
        if self.parked.insert(at) {
            while let Err(error) = inner.dead_letters.park(record, &self.consumer, reason).await {
                tracing::warn!(message = "Failed to park an unreadable record; retrying.", %error);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The `transactional.id` of the writer of several-event commands on one partition of a
/// topic: stable, so a restarted or competing owner of the partition fences the previous one.
pub fn writer_transactional_id(topic: &str, partition: i32) -> String {
    format!("{topic}.writer.{partition}")
}

impl<A: Aggregate> Inner<A> {
    fn transactional_producer(&self, partition: i32) -> Arc<TransactionalProducer> {
        let mut producers = self.transactional.lock().expect("transactional lock");
        producers
            .entry(partition)
            .or_insert_with(|| {
                let id = writer_transactional_id(self.codec.topic(), partition);
                Arc::new(TransactionalProducer::new(&self.config, &id))
            })
            .clone()
    }

    fn apply(&self, envelope: Envelope<A::Event>, position: LogPosition) {
        let metadata = &envelope.metadata;
        let verdict = {
            let mut slots = self.slots.lock().expect("slots lock");
            let slot = slots.entry(metadata.aggregate_id.clone()).or_default();
            let verdict = slot.head.judge(metadata);
            if verdict == Verdict::Valid {
                slot.state = std::mem::take(&mut slot.state).evolve(&envelope.event);
                slot.head = Head::of(metadata);
                // A command is processed once all its events are: a repeat of it must never be
                // answered with half its effect.
                if metadata.completes_command() {
                    let outcome = Outcome {
                        state: slot.state.clone(),
                        version: slot.head.version,
                        position: Some(position),
                    };
                    slot.processed.insert(metadata.command_id.clone(), outcome);
                }
            }
            verdict
        };
        if verdict != Verdict::Valid {
            tracing::debug!(
                message = "Ignored an event the arbiter rule rejects.",
                aggregate_id = %metadata.aggregate_id,
                version = metadata.aggregate_version,
                ?verdict,
            );
        }
        if let Some(tx) = self.echoes.lock().expect("echoes lock").remove(&metadata.event_id) {
            let _ = tx.send(Echo { verdict, position });
        }
    }
}

async fn tail_log<A: Aggregate>(inner: Arc<Inner<A>>, reader: TopicReader) {
    let mut pending: BTreeMap<i32, i64> = reader.remaining_before(&reader.end_offsets());
    let mut poison = PoisonBook::load(&inner.config, inner.codec.topic()).await;
    if pending.is_empty() {
        inner.ready.send_replace(true);
    }
    loop {
        let next = if pending.is_empty() {
            reader.next().await
        } else {
            // Catching up: the end may lie past records never delivered (transaction markers).
            match tokio::time::timeout(Duration::from_millis(50), reader.next()).await {
                Ok(next) => next,
                Err(_) => {
                    reader.forget_reached(&mut pending);
                    if pending.is_empty() {
                        inner.ready.send_replace(true);
                    }
                    continue;
                }
            }
        };
        let record = match next {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(message = "Failed to read the log.", %error);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let position = record.position;
        match record.payload.as_deref() {
            Some(bytes) => match waiting_for_registry(|| inner.codec.decode(bytes)).await {
                Ok(envelope) => inner.apply(envelope, position),
                Err(error) => poison.unreadable(&inner, &record, &error.to_string()).await,
            },
            None => tracing::warn!(message = "Skipped a record without value.", offset = position.offset),
        }
        if !pending.is_empty() {
            // Partitions whose end lies past their last record are found while idle (above).
            if pending.get(&position.partition).is_some_and(|end| position.offset + 1 >= *end) {
                pending.remove(&position.partition);
            }
            if pending.is_empty() {
                inner.ready.send_replace(true);
            }
        }
    }
}
