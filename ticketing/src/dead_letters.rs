//! `ticketing dead-letters`: list, inspect, replay and skip what readers parked.

use std::io::Write;

use anyhow::{Context, bail};
use platform::log::{DeadLetter, DeadLetters, LogConfig, LogProducer, LogRecord, LogPosition};

use crate::app::{Codecs, LocalServices, connect_log, tool_registry};
use crate::settings::Settings;

/// What an operator does with the dead letters.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeadLetterCommand {
    /// One line per parked record not resolved yet (`--all`: resolved ones and resolutions too).
    List {
        /// Also the resolved entries and the resolutions.
        #[arg(long)]
        all: bool,
    },
    /// Everything about one entry: where it was read, who parked it and why, its headers and
    /// its value (hex).
    Show {
        /// The entry's number (`list` shows it).
        id: i64,
    },
    /// Acts on a parked record again, now that what made it fail is fixed: an inbox command is
    /// appended to its inbox again; an event the order saga could not read is read again and
    /// its reactions are sent (their command ids make one that already happened a no-op).
    Replay {
        /// The entry's number.
        id: i64,
    },
    /// Gives up on a parked record for good: an aggregate blocked by its unreadable event takes
    /// commands again once its command services restart (they read the resolutions at start).
    Skip {
        /// The entry's number.
        id: i64,
    },
}

/// Runs a `dead-letters` command, writing its report to stdout.
pub async fn run(settings: &Settings, command: DeadLetterCommand) -> anyhow::Result<()> {
    let mut local = LocalServices::default();
    let log = connect_log(settings, &mut local).await?;
    let result = act(settings, &log, command).await;
    local.stop().await?;
    result
}

async fn act(settings: &Settings, log: &LogConfig, command: DeadLetterCommand) -> anyhow::Result<()> {
    let entries = DeadLetters::read_all(log).await.context("Failed to read the dead-letter topic")?;
    let mut out = std::io::stdout().lock();
    match command {
        DeadLetterCommand::List { all } => {
            let shown: Vec<&DeadLetter> = entries.iter().filter(|e| all || is_open(&entries, e)).collect();
            writeln!(out, "{:>6}  {:<40}  {:<28}  {:<10}  reason", "id", "source", "parked by", "status")?;
            for entry in &shown {
                let status = status(&entries, entry);
                writeln!(out, "{:>6}  {:<40}  {:<28}  {:<10}  {}", entry.id, entry.source(), entry.consumer, status, entry.reason)?;
            }
            writeln!(out, "{} of {} entries", shown.len(), entries.len())?;
        }
        DeadLetterCommand::Show { id } => {
            let entry = find(&entries, id)?;
            writeln!(out, "id:        {}", entry.id)?;
            writeln!(out, "source:    {}", entry.source())?;
            writeln!(out, "parked by: {}", entry.consumer)?;
            writeln!(out, "reason:    {}", entry.reason)?;
            writeln!(out, "status:    {}", status(&entries, entry))?;
            writeln!(out, "key:       {}", String::from_utf8_lossy(&entry.key))?;
            for (name, value) in &entry.headers {
                writeln!(out, "header:    {name}={}", String::from_utf8_lossy(value))?;
            }
            writeln!(out, "value:     {} bytes", entry.payload.len())?;
            for chunk in entry.payload.chunks(32) {
                let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(out, "  {}", hex.join(" "))?;
            }
        }
        DeadLetterCommand::Replay { id } => {
            let entry = find(&entries, id)?.clone();
            if !is_open(&entries, &entry) {
                bail!("Dead letter {id} is resolved already");
            }
            let sent = replay(settings, log, &entry).await?;
            DeadLetters::open(log).await?.resolve(&entry, "replayed", "operator").await?;
            writeln!(out, "Replayed dead letter {id} ({}): {sent}", entry.source())?;
        }
        DeadLetterCommand::Skip { id } => {
            let entry = find(&entries, id)?.clone();
            if !is_open(&entries, &entry) {
                bail!("Dead letter {id} is resolved already");
            }
            DeadLetters::open(log).await?.resolve(&entry, "skip", "operator").await?;
            writeln!(
                out,
                "Skipped dead letter {id} ({}); restart the command services for an aggregate it blocked to take commands again.",
                entry.source()
            )?;
        }
    }
    Ok(())
}

fn find(entries: &[DeadLetter], id: i64) -> anyhow::Result<&DeadLetter> {
    match entries.iter().find(|e| e.id == id) {
        Some(entry) if entry.resolution.is_none() => Ok(entry),
        Some(_) => bail!("Entry {id} is a resolution, not a parked record"),
        None => bail!("No dead letter {id}; `ticketing dead-letters list` shows them"),
    }
}

/// `open` or `resolved` for a parked record; what was decided for a resolution.
fn status<'a>(entries: &[DeadLetter], entry: &'a DeadLetter) -> &'a str {
    match &entry.resolution {
        Some(resolution) => resolution,
        None if is_open(entries, entry) => "open",
        None => "resolved",
    }
}

/// A parked record no resolution names (a resolution names a source position).
fn is_open(entries: &[DeadLetter], entry: &DeadLetter) -> bool {
    entry.resolution.is_none()
        && !entries.iter().any(|other| {
            other.resolution.is_some()
                && other.id > entry.id
                && (other.topic.as_str(), other.partition, other.offset) == (entry.topic.as_str(), entry.partition, entry.offset)
        })
}

async fn replay(settings: &Settings, log: &LogConfig, entry: &DeadLetter) -> anyhow::Result<String> {
    let producer = LogProducer::new(log)?;
    let headers: Vec<(&str, &[u8])> = entry.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    if entry.consumer == "inbox" {
        let at = producer.append(&entry.topic, &entry.key, &entry.payload, &headers).await?;
        return Ok(format!("the command is in {} again at {}@{}", entry.topic, at.partition, at.offset));
    }
    if entry.consumer == "order-saga" {
        let (registry_url, registry) = tool_registry(settings, log).await?;
        let codecs = Codecs::new(log, &registry_url)?;
        let ends = platform::log::EndOffsets::new(log)?;
        let saga = crate::app::order_saga(&ends, &codecs, DeadLetters::with_producer(log, producer.clone())).await?;
        let record = LogRecord {
            topic: entry.topic.as_str().into(),
            position: LogPosition { partition: entry.partition, offset: entry.offset },
            key: Some(entry.key.clone()),
            payload: Some(entry.payload.clone()),
            headers: entry.headers.clone(),
            timestamp: None,
        };
        let commands = saga.replay_commands(&record).await;
        if let Some(server) = registry {
            server.abort();
        }
        let commands = commands.map_err(|e| anyhow::anyhow!("The event still cannot be read: {e}"))?;
        for command in &commands {
            let record = command.record();
            producer.append(record.topic, record.key, record.payload, &record.headers).await?;
        }
        return Ok(format!("{} reaction command(s) sent", commands.len()));
    }
    bail!(
        "Dead letter {} was parked by {}: an aggregate's own event is never appended again (its version is taken). \
         Make it readable (register its schema, deploy the code that knows it) and restart, or `ticketing dead-letters skip {}`.",
        entry.id,
        entry.consumer,
        entry.id
    )
}
