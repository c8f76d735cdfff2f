//! `ticketing users migrate`: the users topic rewritten so that no sign-up holds personal data
//! in clear. A log cannot be edited in place, so the topic is copied, transformed, into a
//! staging topic, then replaced by it:
//!
//! 1. every record of `<ns>.users` is read in partition order; a sign-up written before
//!    sealing (email and password hash in clear, the email as aggregate id) gets a data key in
//!    the key topic and is re-encoded sealed, under the email's index key; the rest is copied;
//! 2. `<ns>.users` is deleted and created again, and the staging topic copied into it;
//! 3. the staging topic is deleted.
//!
//! Every event keeps its id, version, time, correlation and causation, and an aggregate's
//! events stay in order (they all come from one partition and go to one). An interrupted run
//! resumes where it stopped: while the staging topic exists, the users topic holds nothing the
//! staging topic does not, which is checked before the users topic is deleted: a write made
//! meanwhile (the users component must be stopped while it runs) stops the migration first.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use platform::aggregate::Envelope;
use platform::codec::{EventCodec, waiting_for_registry};
use platform::log::{EndOffsets, LogConfig, LogProducer, LogRecord, TopicReader, TopicSpec, delete_topic, ensure_topics, topic_exists};
use platform::vault::{EmailIndex, KeyLookup, SubjectKeys};
use schemas::codec::AvroCodec;
use schemas::events::AvroEvent;
use schemas::users::{UserEvent, UserSignedUp};
use users_command::domain::PersonalData;

use crate::app::{Codecs, LocalServices, connect_log, tool_registry};
use crate::settings::Settings;

/// `ticketing users migrate`'s options.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only count what would be rewritten.
    #[arg(long)]
    pub dry_run: bool,
}

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Records of the users topic.
    pub records: usize,
    /// Sign-ups sealed (0: nothing held personal data in clear).
    pub sealed: usize,
}

/// Runs the migration (see the module's documentation).
pub async fn run(settings: &Settings, args: MigrateArgs) -> anyhow::Result<MigrationReport> {
    let mut local = LocalServices::default();
    let log = connect_log(settings, &mut local).await?;
    let (registry_url, registry_server) = tool_registry(settings, &log).await?;
    let result = migrate(settings, &log, &registry_url, &args).await;
    if let Some(server) = registry_server {
        server.abort();
    }
    local.stop().await?;
    result
}

async fn migrate(settings: &Settings, log: &LogConfig, registry_url: &str, args: &MigrateArgs) -> anyhow::Result<MigrationReport> {
    let codecs = Codecs::new(log, registry_url)?;
    let users = log.topic(UserEvent::TOPIC);
    let staging = format!("{users}.migration");
    let ends = EndOffsets::new(log)?;
    let resuming = topic_exists(log, &staging).await?;
    // An interrupted run may have deleted the users topic and not yet made it again.
    let records = if resuming && !topic_exists(log, &users).await? { Vec::new() } else { read_all(log, &users).await? };
    let mut report = MigrationReport { records: records.len(), sealed: 0 };
    let mut envelopes = Vec::with_capacity(records.len());
    for record in &records {
        envelopes.push(decode(&codecs.users, record).await?);
    }
    let legacy = envelopes.iter().filter(|e| is_legacy(e)).count();
    if args.dry_run {
        eprintln!("{users}: {} records, {legacy} sign-ups hold personal data in clear{}", records.len(),
            if resuming { " (an interrupted migration's staging topic exists)" } else { "" });
        report.sealed = legacy;
        return Ok(report);
    }
    if legacy == 0 && !resuming {
        eprintln!("{users}: {} records, none holds personal data in clear; nothing to migrate", records.len());
        return Ok(report);
    }
    let producer = LogProducer::new(log)?;
    if legacy > 0 {
        // Step 1, from the start: a staging topic of an earlier attempt may be incomplete.
        if resuming {
            delete_topic(log, &staging).await?;
        }
        let partitions = ends.partition_count(&users).await?;
        ensure_topics(log, &[TopicSpec { name: staging.clone(), partitions, compacted: false, config: Vec::new() }]).await?;
        let keys = SubjectKeys::open(log, settings.master_key.clone()).await.context("Failed to read the users' data keys")?;
        let index = EmailIndex::new(&settings.master_key);
        for (n, envelope) in envelopes.into_iter().enumerate() {
            let (envelope, was_legacy) = seal(envelope, &keys, &index).await?;
            report.sealed += usize::from(was_legacy);
            let bytes = codecs.users.encode(&envelope).await.map_err(|e| anyhow::anyhow!("Failed to encode: {e}"))?;
            let event_type = codecs.users.event_type(&envelope.event).as_bytes();
            producer.append(&staging, envelope.metadata.aggregate_id.as_bytes(), &bytes, &[("event_type", event_type)]).await?;
            if (n + 1) % 1000 == 0 {
                eprintln!("sealing: {}/{} records", n + 1, records.len());
            }
        }
        eprintln!("{staging}: {} records written, {} sign-ups sealed", records.len(), report.sealed);
    }
    // Step 2: the users topic replaced by the staging topic's records, once nothing in it can
    // be lost: it holds no event the staging topic lacks (a users service still running, or a
    // write since an interrupted run, would have added one).
    let staged = read_all(log, &staging).await?;
    let mut staged_events = std::collections::HashSet::new();
    for record in &staged {
        staged_events.insert(decode(&codecs.users, record).await?.metadata.event_id);
    }
    let current = if topic_exists(log, &users).await? { read_all(log, &users).await? } else { Vec::new() };
    for record in &current {
        let event_id = decode(&codecs.users, record).await?.metadata.event_id;
        if !staged_events.contains(&event_id) {
            bail!(
                "{users} holds event {event_id} that {staging} lacks: stop every users component and run the migration again"
            );
        }
    }
    let partitions = ends.partition_count(&staging).await?;
    delete_topic(log, &users).await?;
    ensure_topics(log, &[TopicSpec { name: users.clone(), partitions, compacted: false, config: Vec::new() }]).await?;
    for record in &staged {
        let headers: Vec<(&str, &[u8])> = record.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let key = record.key.as_deref().unwrap_or_default();
        let payload = record.payload.as_deref().unwrap_or_default();
        producer.append(&users, key, payload, &headers).await?;
    }
    let copied = read_all(log, &users).await?.len();
    if copied != staged.len() {
        bail!("{users} holds {copied} records after the copy, {} expected; {staging} is kept: run the migration again", staged.len());
    }
    // Step 3.
    delete_topic(log, &staging).await?;
    eprintln!("{users}: replaced; {copied} records, {} sign-ups sealed; no personal data is left in clear", report.sealed);
    Ok(report)
}

async fn decode(codec: &AvroCodec<UserEvent>, record: &LogRecord) -> anyhow::Result<Envelope<UserEvent>> {
    let payload = record.payload.as_deref().with_context(|| format!("{}@{} has no value", record.topic, record.position.offset))?;
    waiting_for_registry(|| codec.decode(payload))
        .await
        .with_context(|| format!("{} {}@{} cannot be decoded", record.topic, record.position.partition, record.position.offset))
}

fn is_legacy(envelope: &Envelope<UserEvent>) -> bool {
    // Records written before sealing have the email as aggregate id (an index key never holds
    // `@`), and sign-ups in clear.
    let clear = matches!(&envelope.event, UserEvent::SignedUp(e) if e.personal.is_empty());
    clear || envelope.metadata.aggregate_id.contains('@')
}

/// The record as the current code writes it: sealed, under the email's index key.
async fn seal(
    mut envelope: Envelope<UserEvent>,
    keys: &SubjectKeys,
    index: &EmailIndex,
) -> anyhow::Result<(Envelope<UserEvent>, bool)> {
    if !is_legacy(&envelope) {
        return Ok((envelope, false));
    }
    let email = envelope.metadata.aggregate_id.clone();
    if email.contains('@') {
        let key = index.key_of(&email);
        envelope.metadata.command_id = envelope.metadata.command_id.replace(&email, &key);
        envelope.metadata.aggregate_id = key;
    }
    if let UserEvent::SignedUp(event) = &envelope.event
        && event.personal.is_empty()
    {
        // A key made by an interrupted run is used again.
        let key = match keys.lookup(&event.user_id, Duration::ZERO).await {
            KeyLookup::Active(key) => key,
            _ => keys.create(&event.user_id).await?,
        };
        let personal = PersonalData { email: event.email.clone(), password_hash: event.password_hash.clone() };
        envelope.event = UserEvent::SignedUp(UserSignedUp {
            user_id: event.user_id.clone(),
            email: String::new(),
            password_hash: String::new(),
            personal: key.seal(&event.user_id, &personal.to_bytes()),
        });
    }
    Ok((envelope, true))
}

async fn read_all(log: &LogConfig, topic: &str) -> anyhow::Result<Vec<LogRecord>> {
    let reader = TopicReader::from_beginning(log, topic)?;
    let ends: BTreeMap<i32, i64> = reader.end_offsets();
    let mut records = Vec::new();
    reader.read_until(&ends, |record| records.push(record)).await?;
    Ok(records)
}

