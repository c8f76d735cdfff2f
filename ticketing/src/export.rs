//! `ticketing export`: the event history as JSON lines or Avro object container files, chosen by
//! topic, time or offset window, event type and aggregate, and resumable from a checkpoint.
//!
//! Each topic is read by a task of its own, which hands batches of its records to tasks that
//! filter, decode and format them on every core; one writer puts them out in the order each
//! partition holds them and keeps the checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apache_avro::types::Value;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use platform::log::{EndOffsets, LogConfig, LogRecord, ReadUntil, RecordHeaders, TopicBatches};
use platform::ownership::partition_for;
use schemas::catalog::{AvroFields, EventTopic, REDACTED, event_topics, rfc3339_millis};
use schemas::codec::registry_settings;
use schemas::events::ENVELOPE_FIELDS;
use schemas::evolution::{RecordReader, WriterSchema, wire_header};
use schemas::transcode::{JsonTranscoder, write_json_str, write_rfc3339_millis};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::app::{LocalServices, connect_log, tool_registry};
use crate::settings::Settings;

/// How records are written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line: where the record sits, its envelope and its payload, as the
    /// current code reads it.
    Jsonl,
    /// Avro object container files, one per writer schema, holding the records as written.
    Avro,
}

/// Where a window starts or stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// At the first record written at or after this time (ms since the epoch).
    Time(i64),
    /// At this offset of every partition.
    Offset(i64),
    /// At these offsets, per partition (other partitions are not bounded).
    Offsets(BTreeMap<i32, i64>),
}

impl std::str::FromStr for Bound {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let number = |s: &str| s.parse::<i64>().ok().filter(|n| *n >= 0);
        if let Some(offset) = number(text) {
            return Ok(Bound::Offset(offset));
        }
        let pairs: Option<BTreeMap<i32, i64>> = text
            .split(',')
            .map(|pair| {
                let (partition, offset) = pair.trim().split_once(':')?;
                Some((partition.parse::<i32>().ok().filter(|p| *p >= 0)?, number(offset)?))
            })
            .collect();
        if let Some(pairs) = pairs {
            return Ok(Bound::Offsets(pairs));
        }
        chrono::DateTime::parse_from_rfc3339(text).map(|t| Bound::Time(t.timestamp_millis())).map_err(|_| {
            format!(
                "{text:?} is neither an RFC 3339 time (2026-12-01T10:00:00Z), an offset (120) nor \
                 partition:offset pairs (0:120,1:88)"
            )
        })
    }
}

/// `ticketing export`'s options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A topic to export (users, tickets, orders, payments); repeat for several. Default: all.
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Start of the window (inclusive): an RFC 3339 time, an offset, or partition:offset pairs.
    #[arg(long, value_name = "BOUND")]
    pub since: Option<Bound>,
    /// End of the window (exclusive), in the same forms. Default: the log's end when the
    /// export starts.
    #[arg(long, value_name = "BOUND", conflicts_with = "follow")]
    pub until: Option<Bound>,
    /// Only events of this type (TicketCreated, OrderCancelled, ...); repeat for several.
    #[arg(long = "type", value_name = "EVENT_TYPE")]
    pub event_types: Vec<String>,
    /// Only the events of this aggregate (its id: the record key).
    #[arg(long, value_name = "ID")]
    pub aggregate: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Where to write: a file for jsonl (default: standard output), a directory for avro.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Keeps the export's progress in this file and, when it exists, resumes from it.
    #[arg(long, value_name = "FILE")]
    pub from_checkpoint: Option<PathBuf>,
    /// Goes on with new events after the log's end until interrupted (Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    /// Writes personal data (emails, password hashes, card tokens) instead of redacting it.
    #[arg(long)]
    pub include_personal_data: bool,
}

/// What an export did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Events written.
    pub exported: u64,
    /// Records read but left out by the filters.
    pub filtered: u64,
    /// Records that could not be decoded (reported on stderr; in JSON lines, as error lines).
    pub undecodable: u64,
}

/// How often the checkpoint is written while the export runs.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// Runs an export.
pub async fn run(settings: &Settings, args: ExportArgs) -> anyhow::Result<ExportReport> {
    let topics = selected_topics(&args)?;
    let checkpoint = match &args.from_checkpoint {
        Some(path) => Checkpoint::load(path, &args)?,
        None => None,
    };
    let mut local = LocalServices::default();
    let log = connect_log(settings, &mut local).await?;
    let (registry_url, registry_server) = tool_registry(settings, &log).await?;
    // Personal data asked for: sealed values are opened with the users' data keys (an erased
    // user's show as erased).
    let keys = if args.include_personal_data && topics.iter().any(|t| t.name == <schemas::users::UserEvent as schemas::events::AvroEvent>::TOPIC) {
        let keys = platform::vault::SubjectKeys::open(&log, settings.master_key.clone())
            .await
            .context("Failed to read the users' data keys")?;
        Some(Arc::new(keys))
    } else {
        None
    };
    let result = export(&log, &registry_url, &args, &topics, checkpoint, keys).await;
    if let Some(server) = registry_server {
        server.abort();
    }
    local.stop().await?;
    result
}

fn selected_topics(args: &ExportArgs) -> anyhow::Result<Vec<EventTopic>> {
    let all = event_topics();
    let topics: Vec<EventTopic> = if args.topics.is_empty() {
        all.to_vec()
    } else {
        let mut chosen = Vec::new();
        for name in &args.topics {
            let Some(topic) = EventTopic::named(name) else {
                let known: Vec<&str> = all.iter().map(|t| t.name).collect();
                bail!("Unknown topic {name:?}; known: {}", known.join(", "));
            };
            chosen.push(topic);
        }
        chosen
    };
    for event_type in &args.event_types {
        if !topics.iter().any(|t| t.has_event_type(event_type)) {
            bail!("No exported topic has events of type {event_type:?}");
        }
    }
    if args.format == Format::Avro && args.output.is_none() {
        bail!("--format avro writes one file per schema: name a directory with --output");
    }
    Ok(topics)
}

/// The part of one topic an export reads.
struct TopicWindow {
    topic: EventTopic,
    full_name: String,
    /// Only this partition (an aggregate's), or all.
    only: Option<i32>,
    start: BTreeMap<i32, i64>,
    /// Where each partition stops; `None` while following.
    end: Option<BTreeMap<i32, i64>>,
}

async fn windows(
    log: &LogConfig,
    ends: &EndOffsets,
    args: &ExportArgs,
    topics: &[EventTopic],
    checkpoint: Option<&Checkpoint>,
) -> anyhow::Result<Vec<TopicWindow>> {
    let mut windows = Vec::new();
    for topic in topics {
        let full_name = log.topic(topic.name);
        let count = ends.partition_count(&full_name).await.with_context(|| format!("Failed to look up {full_name}"))?;
        let only = args.aggregate.as_ref().map(|id| partition_for(id.as_bytes(), count));
        let partitions: Vec<i32> = (0..count).filter(|p| only.is_none_or(|o| o == *p)).collect();
        let mut high = BTreeMap::new();
        for p in &partitions {
            high.insert(*p, ends.end_of(&full_name, *p).await?);
        }
        let zero: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
        let mut start = bound_offsets(ends, &full_name, args.since.as_ref(), &zero).await?;
        if let Some(resumed) = checkpoint.and_then(|c| c.positions.get(&full_name)) {
            for (p, next) in resumed {
                if let Some(offset) = start.get_mut(p) {
                    *offset = *next;
                }
            }
        }
        let end = if args.follow { None } else { Some(bound_offsets(ends, &full_name, args.until.as_ref(), &high).await?) };
        windows.push(TopicWindow { topic: *topic, full_name, only, start, end });
    }
    Ok(windows)
}

/// The offset of each partition in `unbounded` where `bound` lies (the offset in `unbounded`
/// where it does not bound the partition).
async fn bound_offsets(
    ends: &EndOffsets,
    topic: &str,
    bound: Option<&Bound>,
    unbounded: &BTreeMap<i32, i64>,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let at_time = match bound {
        Some(Bound::Time(ms)) => Some(ends.offsets_at_time(topic, *ms).await?),
        _ => None,
    };
    Ok(unbounded
        .iter()
        .map(|(p, default)| {
            let offset = match bound {
                None => *default,
                Some(Bound::Time(_)) => at_time.as_ref().and_then(|t| t.get(p).copied()).unwrap_or(*default),
                Some(Bound::Offset(n)) => *n,
                Some(Bound::Offsets(pairs)) => pairs.get(p).copied().unwrap_or(*default),
            };
            (*p, offset)
        })
        .collect())
}

/// What one record becomes.
enum Piece {
    /// A JSON line, written to its batch's text.
    Line,
    /// A record for the Avro file of its writer's schema (`writer`, an id among its batch's
    /// `writers`): its datum is the next `len` bytes of its batch's text.
    Avro { writer: u32, len: usize },
    /// Left out by the filters.
    Filtered,
    /// Could not be read: why (for jsonl, its error line is in the batch's text).
    Undecodable { reason: String },
}

/// Consecutive records of a topic, decoded: per record its partition, offset and piece, and
/// the JSON lines (or Avro datums) of them all, in order.
#[derive(Default)]
struct Decoded {
    pieces: Vec<(i32, i64, Piece)>,
    text: Vec<u8>,
    /// The writer schemas of the batch's Avro pieces, each once: a reference counted per record
    /// went back and forth between the decoding threads and the writer's.
    writers: Vec<Arc<WriterSchema>>,
}

impl Decoded {
    /// An Avro piece of `len` bytes written with `writer`.
    fn avro(&mut self, writer: &Arc<WriterSchema>, len: usize) -> Piece {
        if !self.writers.iter().any(|known| known.id == writer.id) {
            self.writers.push(writer.clone());
        }
        Piece::Avro { writer: writer.id, len }
    }
}

/// Output buffers going round between the decoding tasks and the writer. A buffer made new for
/// every batch (some 400 KB) came from pages the kernel had to zero each time: a tenth of a
/// JSON export's CPU.
#[derive(Default)]
struct TextBuffers(std::sync::Mutex<Vec<Vec<u8>>>);

/// Buffers kept for reuse: the batches in flight and queued for the writer, for a few topics.
const TEXT_BUFFERS_KEPT: usize = 32;

impl TextBuffers {
    /// An empty buffer with room for at least `capacity` bytes.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut buffer = self.0.lock().expect("buffers lock").pop().unwrap_or_default();
        buffer.reserve(capacity);
        buffer
    }

    /// Keeps `buffer` for a later batch.
    fn give_back(&self, mut buffer: Vec<u8>) {
        let mut kept = self.0.lock().expect("buffers lock");
        if kept.len() < TEXT_BUFFERS_KEPT {
            buffer.clear();
            kept.push(buffer);
        }
    }
}

/// Messages from the topic readers to the writer.
enum Read {
    /// A batch of a topic's records, as read.
    Records { topic: String, decoded: Decoded },
    /// A topic has been read to its end.
    Finished { topic: String, ends: BTreeMap<i32, i64> },
}

#[derive(Clone)]
struct Filter {
    event_types: Vec<String>,
    aggregate: Option<String>,
    include_personal_data: bool,
    format: Format,
    keys: Option<Arc<platform::vault::SubjectKeys>>,
}

async fn export(
    log: &LogConfig,
    registry_url: &str,
    args: &ExportArgs,
    topics: &[EventTopic],
    checkpoint: Option<Checkpoint>,
    keys: Option<Arc<platform::vault::SubjectKeys>>,
) -> anyhow::Result<ExportReport> {
    let ends = EndOffsets::new(log)?;
    let windows = windows(log, &ends, args, topics, checkpoint.as_ref()).await?;
    let total: Option<u64> = windows
        .iter()
        .map(|w| {
            w.end.as_ref().map(|end| {
                end.iter().map(|(p, e)| (*e - w.start.get(p).copied().unwrap_or(0)).max(0) as u64).sum::<u64>()
            })
        })
        .sum();
    let mut positions: BTreeMap<String, BTreeMap<i32, i64>> =
        windows.iter().map(|w| (w.full_name.clone(), w.start.clone())).collect();
    let mut sink = Sink::open(args, checkpoint.as_ref())?;

    let filter = Filter {
        event_types: args.event_types.clone(),
        aggregate: args.aggregate.clone(),
        include_personal_data: args.include_personal_data,
        format: args.format,
        keys,
    };
    let settings = registry_settings(registry_url)?;
    let (tx, mut rx) = mpsc::channel::<Read>(BATCHES_IN_FLIGHT * 2);
    let mut readers = tokio::task::JoinSet::new();
    let buffers = Arc::new(TextBuffers::default());
    for window in windows {
        let reader = RecordReader::new(settings.clone(), window.topic.schemas, window.topic.upcasters);
        let decoder = Arc::new(TopicDecoder::new(window.topic, &window.full_name, reader, filter.clone(), buffers.clone()));
        readers.spawn(read_topic(log.clone(), window, decoder, tx.clone()));
    }
    drop(tx);

    let bar = progress_bar(total);
    let started = Instant::now();
    let mut report = ExportReport::default();
    let mut last_checkpoint = Instant::now();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    // While following, a quiet log must not leave written events in the buffer.
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    let mut failure = None;
    loop {
        let message = tokio::select! {
            message = rx.recv() => message,
            _ = tick.tick() => {
                save_checkpoint(args, &mut sink, &positions)?;
                last_checkpoint = Instant::now();
                continue;
            }
            _ = &mut interrupted, if args.follow => None,
            Some(done) = readers.join_next() => {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => { failure = Some(error); break; }
                    Err(panic) => { failure = Some(anyhow::anyhow!("A topic reader failed: {panic}")); break; }
                }
                continue;
            }
        };
        let Some(message) = message else { break };
        match message {
            Read::Records { topic, decoded } => {
                let count = decoded.pieces.len() as u64;
                if args.format == Format::Jsonl && !decoded.text.is_empty() {
                    sink.line(&decoded.text)?;
                }
                let mut datums = decoded.text.as_slice();
                let positions = positions.entry(topic.clone()).or_default();
                for (partition, offset, piece) in decoded.pieces {
                    match piece {
                        Piece::Line => report.exported += 1,
                        Piece::Avro { writer, len } => {
                            let (datum, rest) = datums.split_at(len);
                            datums = rest;
                            let writer = decoded.writers.iter().find(|w| w.id == writer).expect("a batch holds its pieces' writers");
                            sink.avro(writer, datum)?;
                            report.exported += 1;
                        }
                        Piece::Filtered => report.filtered += 1,
                        Piece::Undecodable { reason } => {
                            report.undecodable += 1;
                            bar.suspend(|| eprintln!("{topic} {partition}@{offset} cannot be read: {reason}"));
                        }
                    }
                    positions.insert(partition, offset + 1);
                }
                buffers.give_back(decoded.text);
                bar.inc(count);
            }
            Read::Finished { topic, ends } => {
                positions.entry(topic).or_default().extend(ends);
            }
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            save_checkpoint(args, &mut sink, &positions)?;
            last_checkpoint = Instant::now();
        }
    }
    readers.abort_all();
    save_checkpoint(args, &mut sink, &positions)?;
    sink.finish()?;
    bar.finish_and_clear();
    if let Some(error) = failure {
        return Err(error.context(format!(
            "The export stopped after {} events{}",
            report.exported,
            if args.from_checkpoint.is_some() { "; run it again with the same --from-checkpoint to go on" } else { "" }
        )));
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "Exported {} events ({} left out by the filters, {} undecodable) in {:.1} s ({:.0} records/s) to {}.",
        report.exported,
        report.filtered,
        report.undecodable,
        elapsed,
        (report.exported + report.filtered + report.undecodable) as f64 / elapsed.max(1e-9),
        args.output.as_ref().map_or("standard output".to_string(), |p| p.display().to_string()),
    );
    Ok(report)
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    match total {
        Some(total) => {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("exporting [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} exporting: {pos} records ({per_sec}), following").expect("valid template"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        }
    }
}

/// Most records decoded together, and batches being decoded at once per topic: batches go to
/// the runtime's workers, so decoding and formatting use every core while the writer puts them
/// out in the order they were read.
const BATCH_RECORDS: usize = 1024;
const BATCHES_IN_FLIGHT: usize = 4;

async fn read_topic(
    log: LogConfig,
    window: TopicWindow,
    decoder: Arc<TopicDecoder>,
    tx: mpsc::Sender<Read>,
) -> anyhow::Result<()> {
    let topic = window.full_name.clone();
    let until = match &window.end {
        Some(end) => ReadUntil::Offsets(end.clone()),
        None => ReadUntil::Never,
    };
    // The `event_type` header only lets a type filter skip records before decoding them.
    let headers = if decoder.filter.event_types.is_empty() { RecordHeaders::Dropped } else { RecordHeaders::Kept };
    let mut batches = TopicBatches::open(&log, &topic, &window.start, window.only, until, BATCH_RECORDS, headers)
        .with_context(|| format!("Failed to read {topic}"))?;
    let mut decoding: std::collections::VecDeque<tokio::task::JoinHandle<Decoded>> =
        std::collections::VecDeque::new();
    let mut read_all = false;
    while !(read_all && decoding.is_empty()) {
        let may_read = !read_all && decoding.len() < BATCHES_IN_FLIGHT;
        // A batch is put out as soon as it is decoded, also while the log is quiet.
        let decoded = async {
            match decoding.front_mut() {
                Some(batch) => batch.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            decoded = decoded => {
                decoding.pop_front();
                let decoded = decoded.context("A decoding task failed")?;
                if tx.send(Read::Records { topic: topic.clone(), decoded }).await.is_err() {
                    return Ok(());
                }
            }
            batch = batches.next(), if may_read => {
                let Some(records) = batch else {
                    read_all = true;
                    continue;
                };
                let records = records?;
                let decoder = decoder.clone();
                decoding.push_back(tokio::spawn(async move { decoder.decode(&records).await }));
            }
        }
    }
    let ends = window.end.unwrap_or_default();
    let _ = tx.send(Read::Finished { topic, ends }).await;
    Ok(())
}

/// One topic's records as the export reads them: the general reader, and for each writer
/// schema that is its type's current one, a compiled transcoder that writes JSON lines
/// straight from the datum (the general reader stays the reference, and reads what the
/// transcoder refuses).
struct TopicDecoder {
    topic: EventTopic,
    /// The topic's name in the log.
    full_name: Box<str>,
    /// How a JSON line of the topic starts: `{"topic":…,"partition":`.
    line_start: Box<[u8]>,
    reader: RecordReader,
    /// What the export keeps, and how it writes it (the transcoders are compiled for it).
    filter: Filter,
    /// Per writer schema id: its transcoder, or `None` where the general reader must read.
    transcoders: std::sync::RwLock<HashMap<u32, Option<Arc<Transcoding>>>>,
    /// Where a batch's output buffer comes from.
    buffers: Arc<TextBuffers>,
}

struct Transcoding {
    writer: Arc<WriterSchema>,
    event_type: String,
    transcoder: JsonTranscoder,
    /// What a JSON line holds between its key and its envelope, the same for every record of
    /// the schema: `,"event_type":…,"schema_id":…,"envelope":`.
    line_middle: Box<[u8]>,
}

/// What one decoding task keeps from record to record of its batch.
#[derive(Default)]
struct Scratch {
    /// A record's envelope and payload objects, where they cannot be written straight into
    /// the line.
    objects: (Vec<u8>, Vec<u8>),
    /// The transcodings met so far, by writer schema id: looking them up in the decoder's
    /// shared map, and counting references to them, went through locks and reference counts
    /// shared by every decoding thread, for every record.
    transcodings: Vec<(u32, Option<Arc<Transcoding>>)>,
}

impl TopicDecoder {
    /// A decoder of the records of `topic`, named `full_name` in the log.
    fn new(topic: EventTopic, full_name: &str, reader: RecordReader, filter: Filter, buffers: Arc<TextBuffers>) -> Self {
        let mut line_start = b"{\"topic\":".to_vec();
        write_json_str(full_name, &mut line_start);
        line_start.extend_from_slice(b",\"partition\":");
        Self { topic, full_name: full_name.into(), line_start: line_start.into(), reader, filter, transcoders: Default::default(), buffers }
    }

    /// Filters, decodes and formats a batch of records.
    async fn decode(&self, records: &[LogRecord]) -> Decoded {
        let mut decoded =
            Decoded { pieces: Vec::with_capacity(records.len()), text: self.buffers.take(records.len() * 400), writers: Vec::new() };
        let mut scratch = Scratch::default();
        for record in records {
            let piece = self.piece_of(record, &mut decoded, &mut scratch).await;
            decoded.pieces.push((record.position.partition, record.position.offset, piece));
        }
        decoded
    }

    async fn piece_of(&self, record: &LogRecord, out: &mut Decoded, scratch: &mut Scratch) -> Piece {
        let (topic, filter) = (&self.topic, &self.filter);
        if let Some(aggregate) = &filter.aggregate
            && record.key.as_deref() != Some(aggregate.as_bytes())
        {
            return Piece::Filtered;
        }
        if !filter.event_types.is_empty()
            && let Some(header_type) = record.header("event_type")
            && !filter.event_types.iter().any(|t| t.as_bytes() == header_type)
        {
            return Piece::Filtered;
        }
        let Some(payload) = record.payload.as_deref() else {
            return undecodable(topic, filter, record, "a tombstone (no value)".into(), &mut out.text);
        };
        if filter.keys.is_none()
            && let Some(piece) = self.transcoded(record, payload, out, scratch).await
        {
            return piece;
        }
        self.read_generally(record, payload, out).await
    }

    /// The record decoded to values, brought to its current schema (JSON lines), redacted and
    /// written out: the reference for the transcoder.
    async fn read_generally(&self, record: &LogRecord, payload: &[u8], out: &mut Decoded) -> Piece {
        let (topic, filter) = (&self.topic, &self.filter);
        let text = &mut out.text;
        let read = platform::codec::waiting_for_registry(|| async {
            match filter.format {
                Format::Jsonl => self.reader.read(payload).await.map(|r| (r.writer, r.fields)),
                Format::Avro => self.reader.writers().decode(payload).await.map(|r| (r.schema, r.fields)),
            }
        })
        .await;
        let (writer, mut fields) = match read {
            Ok(read) => read,
            Err(error) => return undecodable(topic, filter, record, error.to_string(), text),
        };
        let event_type = writer.full_name.rsplit('.').next().unwrap_or_default().to_string();
        if !filter.event_types.is_empty() && !filter.event_types.contains(&event_type) {
            return Piece::Filtered;
        }
        if !filter.include_personal_data {
            topic.redact(&writer.full_name, &mut fields);
        }
        match filter.format {
            Format::Avro => {
                let encoded = apache_avro::writer::datum::GenericDatumWriter::builder(writer.schema)
                    .build()
                    .and_then(|w| w.write_value_to_vec(Value::Record(fields)));
                match encoded {
                    Ok(datum) => {
                        text.extend_from_slice(&datum);
                        out.avro(&writer, datum.len())
                    }
                    Err(error) => undecodable(topic, filter, record, format!("cannot be written back: {error}"), text),
                }
            }
            Format::Jsonl => {
                let in_envelope = |(name, _): &&(String, Value)| ENVELOPE_FIELDS.contains(&name.as_str());
                let envelope = AvroFields(fields.iter().filter(in_envelope));
                let payload = AvroFields(fields.iter().filter(|f| !in_envelope(f)));
                let payload = match &filter.keys {
                    // Sealed personal data opened: the payload is changed as a JSON object.
                    Some(keys) => {
                        let mut opened = serde_json::to_value(&payload).expect("Avro values serialize");
                        if let Some(fields) = opened.as_object_mut() {
                            open_personal(keys, fields).await;
                        }
                        PayloadJson::Opened(opened)
                    }
                    None => PayloadJson::Fields(payload),
                };
                let line = JsonLine {
                    topic: &record.topic,
                    partition: record.position.partition,
                    offset: record.position.offset,
                    timestamp: record.timestamp.map(rfc3339_millis),
                    key: key_of(topic, filter, record),
                    event_type: &event_type,
                    schema_id: writer.id,
                    envelope: &envelope,
                    payload,
                };
                write_line(&line, text);
                Piece::Line
            }
        }
    }

    /// The record's JSON line written by its writer schema's transcoder (for Avro files, its
    /// datum as written, once the transcoder has read it), or `None` where the general reader
    /// must read it (an unknown or old writer schema, personal data to redact in an Avro
    /// file, a datum the transcoder refuses). Writes exactly what the general reader would.
    async fn transcoded(&self, record: &LogRecord, payload: &[u8], out: &mut Decoded, scratch: &mut Scratch) -> Option<Piece> {
        let filter = &self.filter;
        let text = &mut out.text;
        let (id, datum) = wire_header(payload).ok()?;
        let transcoding = match scratch.transcodings.iter().find(|(known, _)| *known == id) {
            Some((_, transcoding)) => transcoding.as_ref()?,
            None => {
                let transcoding = self.transcoding(id).await;
                // Not while the registry is unreachable: the next record asks again.
                if !self.transcoders.read().expect("transcoders lock").contains_key(&id) {
                    return None;
                }
                scratch.transcodings.push((id, transcoding));
                scratch.transcodings.last().and_then(|(_, t)| t.as_ref())?
            }
        };
        if !filter.event_types.is_empty() && !filter.event_types.contains(&transcoding.event_type) {
            return Some(Piece::Filtered);
        }
        // A datum the transcoder reads, the general reader reads too, and the same way.
        if filter.format == Format::Avro {
            transcoding.transcoder.check(datum).ok()?;
            text.extend_from_slice(datum);
            return Some(out.avro(&transcoding.writer, datum.len()));
        }
        // As `JsonLine` serializes; a datum the transcoder refuses takes its line back.
        let line_start = text.len();
        if *record.topic == *self.full_name {
            text.extend_from_slice(&self.line_start);
        } else {
            text.extend_from_slice(b"{\"topic\":");
            write_json_str(&record.topic, text);
            text.extend_from_slice(b",\"partition\":");
        }
        text.extend_from_slice(itoa::Buffer::new().format(record.position.partition).as_bytes());
        text.extend_from_slice(b",\"offset\":");
        text.extend_from_slice(itoa::Buffer::new().format(record.position.offset).as_bytes());
        text.extend_from_slice(b",\"timestamp\":");
        match record.timestamp {
            Some(ms) => {
                text.push(b'"');
                write_rfc3339_millis(ms, text);
                text.push(b'"');
            }
            None => text.extend_from_slice(b"null"),
        }
        text.extend_from_slice(b",\"key\":");
        match key_of(&self.topic, filter, record) {
            Some(key) => write_json_str(&key, text),
            None => text.extend_from_slice(b"null"),
        }
        text.extend_from_slice(&transcoding.line_middle);
        if transcoding.transcoder.transcode_joined(datum, text, b",\"payload\":", &mut scratch.objects).is_err() {
            text.truncate(line_start);
            return None;
        }
        text.extend_from_slice(b"}\n");
        Some(Piece::Line)
    }

    /// The transcoder of writer schema `id`, compiled on first use; `None` where the general
    /// reader must read its records: for JSON lines, a schema that is not its type's current
    /// one (upcasters or resolution apply); for Avro files, a record type with personal data
    /// to redact; for both, a schema using what the transcoder does not cover. A registry that
    /// cannot be reached is left to the general reader, which waits for it.
    async fn transcoding(&self, id: u32) -> Option<Arc<Transcoding>> {
        let filter = &self.filter;
        if let Some(known) = self.transcoders.read().expect("transcoders lock").get(&id) {
            return known.clone();
        }
        let writer = self.reader.writers().get(id).await.ok()?;
        let redacted: Vec<&str> = if filter.include_personal_data {
            Vec::new()
        } else {
            self.topic.personal_fields.iter().filter(|p| p.record == writer.full_name).map(|p| p.field).collect()
        };
        let usable = match filter.format {
            Format::Jsonl => self.reader.is_current(&writer),
            Format::Avro => redacted.is_empty(),
        };
        let compiled = usable
            .then(|| JsonTranscoder::compile(writer.schema, &ENVELOPE_FIELDS, &redacted))
            .flatten()
            .map(|transcoder| {
                let event_type = writer.full_name.rsplit('.').next().unwrap_or_default().to_string();
                let mut line_middle = b",\"event_type\":".to_vec();
                write_json_str(&event_type, &mut line_middle);
                line_middle.extend_from_slice(b",\"schema_id\":");
                line_middle.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
                line_middle.extend_from_slice(b",\"envelope\":");
                Arc::new(Transcoding { writer: writer.clone(), event_type, transcoder, line_middle: line_middle.into() })
            });
        self.transcoders.write().expect("transcoders lock").insert(id, compiled.clone());
        compiled
    }
}

/// Replaces a sign-up's sealed `personal` field (base64 in JSON) with what it seals, or with
/// `"[erased]"` when the user's data key is gone.
async fn open_personal(keys: &platform::vault::SubjectKeys, fields: &mut serde_json::Map<String, serde_json::Value>) {
    use base64::Engine as _;
    let (Some(user_id), Some(sealed)) = (
        fields.get("user_id").and_then(|v| v.as_str()).map(str::to_string),
        fields.get("personal").and_then(|v| v.as_str()).and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()),
    ) else {
        return;
    };
    if sealed.is_empty() {
        return;
    }
    let opened = match keys.lookup(&user_id, std::time::Duration::ZERO).await {
        platform::vault::KeyLookup::Active(key) => key
            .open(&user_id, &sealed)
            .ok()
            .and_then(|bytes| users_command::domain::PersonalData::from_bytes(&bytes))
            .and_then(|data| serde_json::to_value(data).ok()),
        _ => None,
    };
    fields.insert("personal".into(), opened.unwrap_or_else(|| ERASED.into()));
}

/// What an erased user's personal data shows as.
pub const ERASED: &str = "[erased]";

fn key_of<'a>(topic: &EventTopic, filter: &Filter, record: &'a LogRecord) -> Option<std::borrow::Cow<'a, str>> {
    let key = record.key.as_deref()?;
    if topic.key_is_personal && !filter.include_personal_data {
        return Some(REDACTED.into());
    }
    // Keys are nearly always UTF-8: checked as such, far faster than `from_utf8_lossy` walks.
    Some(std::str::from_utf8(key).map_or_else(|_| String::from_utf8_lossy(key), std::borrow::Cow::Borrowed))
}

fn undecodable(topic: &EventTopic, filter: &Filter, record: &LogRecord, reason: String, text: &mut Vec<u8>) -> Piece {
    if filter.format == Format::Jsonl {
        use base64::Engine as _;
        let line = ErrorLine {
            topic: &record.topic,
            partition: record.position.partition,
            offset: record.position.offset,
            timestamp: record.timestamp.map(rfc3339_millis),
            key: key_of(topic, filter, record),
            error: &reason,
            // Personal data may sit in what cannot be read: its bytes only when asked for.
            value_base64: filter
                .include_personal_data
                .then(|| base64::engine::general_purpose::STANDARD.encode(record.payload.as_deref().unwrap_or_default())),
        };
        write_line(&line, text);
    }
    Piece::Undecodable { reason }
}

fn write_line(value: &impl Serialize, text: &mut Vec<u8>) {
    serde_json::to_writer(&mut *text, value).expect("export lines serialize");
    text.push(b'\n');
}

/// One event in JSON lines.
#[derive(Serialize)]
struct JsonLine<'a, E: Serialize, P: Serialize> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<String>,
    key: Option<std::borrow::Cow<'a, str>>,
    event_type: &'a str,
    schema_id: u32,
    envelope: &'a E,
    payload: P,
}

/// An event's payload in JSON lines: its fields as read, or as changed (personal data opened).
#[derive(Serialize)]
#[serde(untagged)]
enum PayloadJson<F: Serialize> {
    Fields(F),
    Opened(serde_json::Value),
}

/// A record that could not be read, in JSON lines.
#[derive(Serialize)]
struct ErrorLine<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<String>,
    key: Option<std::borrow::Cow<'a, str>>,
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

/// Where the export writes.
enum Sink {
    /// JSON lines to a file (with the bytes written so far) or to standard output.
    Lines { out: BufWriter<Box<dyn Write + Send>>, file: Option<(PathBuf, u64)> },
    /// One Avro container file per writer schema in a directory.
    Avro { dir: PathBuf, files: HashMap<u32, AvroFile>, resumed: BTreeMap<String, FileMark> },
}

/// An Avro container file being appended to. apache-avro writes its header; its blocks are
/// written here from the datums as they were written to the log, which apache-avro's writer
/// would decode and encode again.
struct AvroFile {
    path: PathBuf,
    out: BufWriter<File>,
    marker: [u8; 16],
    /// The datums of the block being filled, and how many.
    block: Vec<u8>,
    count: i64,
}

/// Bytes of datums per container block (apache-avro's writer uses about 16 KiB).
const AVRO_BLOCK_BYTES: usize = 64 * 1024;

impl Sink {
    fn open(args: &ExportArgs, checkpoint: Option<&Checkpoint>) -> anyhow::Result<Self> {
        let resumed = checkpoint.map(|c| c.files.clone()).unwrap_or_default();
        match (args.format, &args.output) {
            (Format::Jsonl, None) => {
                Ok(Sink::Lines { out: BufWriter::with_capacity(1 << 16, Box::new(std::io::stdout())), file: None })
            }
            (Format::Jsonl, Some(path)) => {
                let key = path.display().to_string();
                let length = match resumed.get(&key) {
                    Some(mark) => {
                        truncate_to(path, mark.bytes)?;
                        mark.bytes
                    }
                    None => {
                        refuse_existing(path.metadata().is_ok_and(|m| m.len() > 0), path)?;
                        0
                    }
                };
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("Failed to open {}", path.display()))?;
                Ok(Sink::Lines { out: BufWriter::with_capacity(1 << 16, Box::new(file)), file: Some((path.clone(), length)) })
            }
            (Format::Avro, Some(dir)) => {
                std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
                if resumed.is_empty() {
                    let has_files = std::fs::read_dir(dir)?
                        .flatten()
                        .any(|e| e.path().extension().is_some_and(|x| x == "avro"));
                    refuse_existing(has_files, dir)?;
                }
                for (path, mark) in &resumed {
                    truncate_to(Path::new(path), mark.bytes)?;
                }
                Ok(Sink::Avro { dir: dir.clone(), files: HashMap::new(), resumed })
            }
            (Format::Avro, None) => unreachable!("checked with the arguments"),
        }
    }

    fn line(&mut self, line: &[u8]) -> anyhow::Result<()> {
        let Sink::Lines { out, file } = self else { unreachable!("lines go to a lines sink") };
        out.write_all(line).context("Failed to write the export")?;
        if let Some((_, length)) = file {
            *length += line.len() as u64;
        }
        Ok(())
    }

    fn avro(&mut self, writer: &Arc<WriterSchema>, datum: &[u8]) -> anyhow::Result<()> {
        let Sink::Avro { dir, files, resumed } = self else { unreachable!("records go to an avro sink") };
        let file = match files.entry(writer.id) {
            std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => new.insert(AvroFile::open(dir, writer, resumed)?),
        };
        file.append(datum).with_context(|| format!("Failed to write to {}", file.path.display()))
    }

    /// Flushes everything out to disk and says how much of each file is the export's.
    fn flush(&mut self) -> anyhow::Result<BTreeMap<String, FileMark>> {
        let mut marks = BTreeMap::new();
        match self {
            Sink::Lines { out, file } => {
                out.flush().context("Failed to write the export")?;
                if let Some((path, length)) = file {
                    marks.insert(path.display().to_string(), FileMark { bytes: *length, sync_marker: None });
                }
            }
            Sink::Avro { files, resumed, .. } => {
                marks.extend(resumed.iter().map(|(k, v)| (k.clone(), v.clone())));
                for file in files.values_mut() {
                    file.flush().with_context(|| format!("Failed to write {}", file.path.display()))?;
                    let bytes = file.out.get_ref().metadata()?.len();
                    marks.insert(file.path.display().to_string(), FileMark { bytes, sync_marker: Some(hex(&file.marker)) });
                }
            }
        }
        Ok(marks)
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.flush().map(|_| ())
    }
}

impl AvroFile {
    fn open(dir: &Path, writer: &Arc<WriterSchema>, resumed: &BTreeMap<String, FileMark>) -> anyhow::Result<Self> {
        let name = writer.full_name.rsplit('.').next().unwrap_or("records");
        let path = dir.join(format!("{name}.schema-{}.avro", writer.id));
        let schema: &'static apache_avro::Schema = writer.schema;
        let mark = resumed.get(&path.display().to_string()).filter(|m| m.bytes > 0);
        let (file, marker) = match mark.and_then(|m| m.sync_marker.as_deref().and_then(unhex)) {
            Some(marker) => {
                let file = OpenOptions::new().append(true).open(&path).with_context(|| format!("Failed to open {}", path.display()))?;
                (file, marker)
            }
            None => {
                let mut file = File::create(&path).with_context(|| format!("Failed to create {}", path.display()))?;
                let marker = *uuid::Uuid::new_v4().as_bytes();
                let mut header = apache_avro::Writer::builder().schema(schema).writer(Vec::new()).marker(marker).build()?;
                header.add_user_metadata("ticketing.topic_record".into(), writer_name(header.schema()))?;
                file.write_all(&header.into_inner()?).with_context(|| format!("Failed to write {}", path.display()))?;
                (file, marker)
            }
        };
        Ok(Self { path, out: BufWriter::with_capacity(AVRO_BLOCK_BYTES * 2, file), marker, block: Vec::new(), count: 0 })
    }

    fn append(&mut self, datum: &[u8]) -> std::io::Result<()> {
        self.block.extend_from_slice(datum);
        self.count += 1;
        if self.block.len() >= AVRO_BLOCK_BYTES {
            self.write_block()?;
        }
        Ok(())
    }

    /// A block: its datums' count and size, the datums, the file's sync marker.
    fn write_block(&mut self) -> std::io::Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let mut head = Vec::with_capacity(20);
        zigzag(self.count, &mut head);
        zigzag(self.block.len() as i64, &mut head);
        self.out.write_all(&head)?;
        self.out.write_all(&self.block)?;
        self.out.write_all(&self.marker)?;
        self.block.clear();
        self.count = 0;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_block()?;
        self.out.flush()
    }
}

/// An Avro long: zig-zag, then variable length.
fn zigzag(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn writer_name(schema: &apache_avro::Schema) -> String {
    match schema {
        apache_avro::Schema::Record(record) => record.name.fullname(None),
        _ => String::new(),
    }
}

fn refuse_existing(exists: bool, path: &Path) -> anyhow::Result<()> {
    if exists {
        bail!(
            "{} already holds an export; remove it, or resume that export with --from-checkpoint",
            path.display()
        );
    }
    Ok(())
}

/// Cuts what a stopped export wrote after its last checkpoint (it is written again).
fn truncate_to(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("The checkpoint names {}, which cannot be opened", path.display()))?;
    let length = file.metadata()?.len();
    if length < bytes {
        bail!("{} is shorter ({length} bytes) than the checkpoint says ({bytes}): it was changed", path.display());
    }
    file.set_len(bytes)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 16]> {
    let bytes: Option<Vec<u8>> =
        (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
    bytes?.try_into().ok()
}

/// How far an export got: written atomically after the output it accounts for is on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    format: Option<Format>,
    output: Option<String>,
    /// The next offset to read, per topic and partition.
    positions: BTreeMap<String, BTreeMap<i32, i64>>,
    /// How many bytes of each output file the export wrote up to `positions`.
    files: BTreeMap<String, FileMark>,
}

/// The export's part of one output file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileMark {
    bytes: u64,
    /// An Avro container file's sync marker, to append blocks to it.
    #[serde(default)]
    sync_marker: Option<String>,
}

impl Checkpoint {
    fn load(path: &Path, args: &ExportArgs) -> anyhow::Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("Failed to read the checkpoint {}", path.display())),
        };
        let checkpoint: Checkpoint = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an export checkpoint", path.display()))?;
        let output = args.output.as_ref().map(|p| p.display().to_string());
        if checkpoint.format != Some(args.format) || checkpoint.output != output {
            bail!(
                "The checkpoint {} belongs to an export in {:?} to {}; resume it with the same --format and --output",
                path.display(),
                checkpoint.format.unwrap_or(Format::Jsonl),
                checkpoint.output.as_deref().unwrap_or("standard output"),
            );
        }
        Ok(Some(checkpoint))
    }
}

fn save_checkpoint(
    args: &ExportArgs,
    sink: &mut Sink,
    positions: &BTreeMap<String, BTreeMap<i32, i64>>,
) -> anyhow::Result<()> {
    let files = sink.flush()?;
    let Some(path) = &args.from_checkpoint else { return Ok(()) };
    let checkpoint = Checkpoint {
        format: Some(args.format),
        output: args.output.as_ref().map(|p| p.display().to_string()),
        positions: positions.clone(),
        files,
    };
    let partial = path.with_extension("partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(&checkpoint)?)
        .with_context(|| format!("Failed to write the checkpoint {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("Failed to write the checkpoint {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_times_offsets_or_partition_offsets() {
        assert_eq!("120".parse::<Bound>(), Ok(Bound::Offset(120)));
        assert_eq!("0:120, 1:88".parse::<Bound>(), Ok(Bound::Offsets(BTreeMap::from([(0, 120), (1, 88)]))));
        assert_eq!("2026-12-01T10:00:00Z".parse::<Bound>(), Ok(Bound::Time(1_796_119_200_000)));
        assert_eq!("2026-12-01T11:00:00+01:00".parse::<Bound>(), Ok(Bound::Time(1_796_119_200_000)));
        for bad in ["", "-1", "0:-5", "yesterday", "1:2:3", "2026-12-01"] {
            assert!(bad.parse::<Bound>().is_err(), "{bad:?} must be refused");
        }
    }

    /// A value of every field of `schema`, with strings that need escaping.
    fn awkward_record(schema: &apache_avro::Schema, n: i64) -> Value {
        let apache_avro::Schema::Record(record) = schema else { panic!("a record") };
        let value = |s: &apache_avro::Schema| match s {
            apache_avro::Schema::String => Value::String(format!("\"quoted\" \\ {n} é\n")),
            apache_avro::Schema::Uuid(_) => Value::Uuid(uuid::Uuid::from_u128(n as u128)),
            apache_avro::Schema::Long => Value::Long(-n),
            apache_avro::Schema::Int => Value::Int(n as i32),
            apache_avro::Schema::TimestampMillis => Value::TimestampMillis(n * 1_000_003),
            apache_avro::Schema::Bytes => Value::Bytes(vec![n as u8, 1, 2]),
            apache_avro::Schema::Union(_) => Value::Union(1, Box::new(Value::String(format!("cause {n}")))),
            other => panic!("no value for {other:?}"),
        };
        Value::Record(record.fields.iter().map(|f| (f.name.clone(), value(&f.schema))).collect())
    }

    #[tokio::test]
    async fn the_transcoder_writes_what_the_general_reader_writes_for_every_event_type() {
        for topic in event_topics() {
            let decoder_for = |filter: Filter| {
                let reader = RecordReader::new(registry_settings("http://127.0.0.1:9").unwrap(), topic.schemas, topic.upcasters);
                for (id, schema) in topic.schemas.iter().enumerate() {
                    reader.writers().remember(id as u32 + 1, schema.avsc.to_string()).unwrap();
                }
                TopicDecoder::new(topic, &format!("ns.{}", topic.name), reader, filter, Arc::default())
            };
            for (id, schema) in topic.schemas.iter().enumerate() {
                let parsed = apache_avro::Schema::parse_str(schema.avsc).unwrap();
                let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&parsed)
                    .build()
                    .unwrap()
                    .write_value_to_vec(awkward_record(&parsed, id as i64 + 7))
                    .unwrap();
                let mut payload = vec![0];
                payload.extend_from_slice(&(id as u32 + 1).to_be_bytes());
                payload.extend_from_slice(&datum);
                for (key, timestamp) in [(Some(b"k\"\xff".to_vec()), Some(1_796_119_200_123)), (None, None)] {
                    let record = LogRecord {
                        topic: format!("ns.{}", topic.name).into(),
                        position: platform::log::LogPosition { partition: 3, offset: 42 },
                        key,
                        payload: Some(payload.clone()),
                        headers: Vec::new(),
                        timestamp,
                    };
                    for (format, include_personal_data) in [(Format::Jsonl, false), (Format::Jsonl, true), (Format::Avro, false), (Format::Avro, true)] {
                        let decoder = decoder_for(Filter { event_types: Vec::new(), aggregate: None, include_personal_data, format, keys: None });
                        let (mut fast, mut general) = (Decoded::default(), Decoded::default());
                        let transcoded = decoder.transcoded(&record, &payload, &mut fast, &mut Scratch::default()).await;
                        let has_personal = topic.personal_fields.iter().any(|p| p.record == schema.full_name);
                        if format == Format::Avro && has_personal && !include_personal_data {
                            assert!(transcoded.is_none(), "{}: redacting needs the general reader", schema.full_name);
                            continue;
                        }
                        let transcoded = transcoded.unwrap_or_else(|| panic!("{} ({format:?}) is transcoded", schema.full_name));
                        let general_piece = decoder.read_generally(&record, &payload, &mut general).await;
                        assert_eq!(String::from_utf8_lossy(&fast.text), String::from_utf8_lossy(&general.text), "{} ({format:?})", schema.full_name);
                        if let (Piece::Avro { writer, .. }, Piece::Avro { writer: general_writer, .. }) = (transcoded, general_piece) {
                            assert_eq!((writer, general_writer), (id as u32 + 1, id as u32 + 1));
                            assert_eq!(fast.writers.iter().map(|w| w.id).collect::<Vec<_>>(), [writer], "the batch holds its writer");
                        }
                    }
                    // A datum cut short is left to the general reader, and its line taken back.
                    let decoder = decoder_for(Filter { event_types: Vec::new(), aggregate: None, include_personal_data: true, format: Format::Jsonl, keys: None });
                    let cut = &payload[..payload.len() - 1];
                    let mut out = Decoded { text: b"an earlier line\n".to_vec(), ..Decoded::default() };
                    assert!(decoder.transcoded(&record, cut, &mut out, &mut Scratch::default()).await.is_none(), "{} cut short", schema.full_name);
                    assert_eq!(out.text, b"an earlier line\n");
                }
            }
        }
    }

    #[test]
    fn longs_are_written_as_avro_writes_them() {
        for n in [0, 1, -1, 63, -64, 64, 1000, -1000, i64::MAX, i64::MIN] {
            let mut ours = Vec::new();
            zigzag(n, &mut ours);
            let schema = apache_avro::Schema::Long;
            let theirs = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build().unwrap().write_value_to_vec(Value::Long(n)).unwrap();
            assert_eq!(ours, theirs, "{n}");
        }
    }

    #[test]
    fn sync_markers_round_trip_through_hex() {
        let marker = *uuid::Uuid::new_v4().as_bytes();
        assert_eq!(unhex(&hex(&marker)), Some(marker));
        assert_eq!(unhex("zz"), None);
    }
}
