//! `ticketing history`: one aggregate's state at a time or a version, and the events that led
//! there with their decisions' metadata, folded with the domain's own `evolve` under the
//! arbiter rule every reader applies.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use platform::aggregate::{Aggregate, Envelope};
use platform::arbiter::{Head, Verdict};
use platform::codec::{EventCodec, waiting_for_registry};
use platform::log::{EndOffsets, LogConfig, TopicReader};
use platform::ownership::partition_for;
use schemas::catalog::{EventTopic, REDACTED, json_value, rfc3339_millis};
use schemas::codec::AvroCodec;
use schemas::events::AvroEvent;
use serde::Serialize;

use crate::app::{Codecs, LocalServices, connect_log, tool_registry};
use crate::settings::Settings;

/// The aggregates whose history can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AggregateKind {
    /// A user: give its email (its aggregate id, the email's index key, is computed with the
    /// master key) or the index key itself.
    User,
    /// A ticket.
    Ticket,
    /// An order.
    Order,
    /// A payment.
    Payment,
}

/// `ticketing history`'s options.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// What kind of aggregate.
    #[arg(value_enum)]
    pub kind: AggregateKind,
    /// Its id.
    pub id: String,
    /// The state as of this time (RFC 3339): after every event decided at or before it.
    #[arg(long, value_name = "TIME", conflicts_with = "version")]
    pub at: Option<String>,
    /// The state at this version (1 for the first event).
    #[arg(long, value_name = "N")]
    pub version: Option<i64>,
    /// Shows personal data (emails, password hashes, card tokens) instead of redacting it.
    #[arg(long)]
    pub include_personal_data: bool,
}

impl std::fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.to_possible_value().expect("no variant is skipped").get_name())
    }
}

/// Where the fold stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After the last event.
    Latest,
    /// After the last event decided at or before this time (ms since the epoch).
    Time(i64),
    /// After the event of this version.
    Version(i64),
}

/// One valid event of the history, with the state it led to.
#[derive(Debug, Serialize)]
pub struct Step {
    /// The aggregate's version after it.
    pub version: i64,
    /// The event's type.
    pub event_type: &'static str,
    /// When it was decided.
    pub occurred_at: String,
    /// Where it sits in the log.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The deciding command.
    pub command_id: String,
    /// The request everything it set off shares.
    pub correlation_id: String,
    /// The event that caused the command, for process managers' commands.
    pub causation_id: Option<String>,
    /// The event's own fields.
    pub event: serde_json::Value,
    /// The aggregate's state after it.
    pub state: serde_json::Value,
}

/// An aggregate's state as of a point, and how it got there.
#[derive(Debug, Serialize)]
pub struct History {
    /// The aggregate kind (`ticket`).
    pub aggregate: String,
    /// Its id.
    pub id: String,
    /// Its version at that point (0: it did not exist yet).
    pub version: i64,
    /// Its state at that point.
    pub state: serde_json::Value,
    /// The valid events up to that point, oldest first.
    pub history: Vec<Step>,
    /// Records of the aggregate the arbiter rule ignored (duplicates, stale writers' events).
    pub ignored: usize,
}

/// Prints the history as JSON on stdout.
pub async fn run(settings: &Settings, args: HistoryArgs) -> anyhow::Result<History> {
    let as_of = match (&args.at, args.version) {
        (Some(at), _) => AsOf::Time(
            chrono::DateTime::parse_from_rfc3339(at)
                .with_context(|| format!("--at {at:?} is not an RFC 3339 time (2026-12-01T10:00:00Z)"))?
                .timestamp_millis(),
        ),
        (None, Some(version)) if version < 1 => bail!("--version counts from 1"),
        (None, Some(version)) => AsOf::Version(version),
        (None, None) => AsOf::Latest,
    };
    let mut local = LocalServices::default();
    let log = connect_log(settings, &mut local).await?;
    let (registry_url, registry_server) = tool_registry(settings, &log).await?;
    let codecs = Codecs::new(&log, &registry_url)?;
    let user_key;
    let id = if args.kind == AggregateKind::User && args.id.contains('@') {
        user_key = platform::vault::EmailIndex::new(&settings.master_key).key_of(&args.id.trim().to_lowercase());
        user_key.as_str()
    } else {
        args.id.as_str()
    };
    let personal = args.include_personal_data;
    let history = match args.kind {
        AggregateKind::User => fold::<users_command::domain::User>(args.kind, &log, &codecs.users, id, as_of, personal).await,
        AggregateKind::Ticket => fold::<tickets_command::domain::Ticket>(args.kind, &log, &codecs.tickets, id, as_of, personal).await,
        AggregateKind::Order => fold::<orders_command::domain::Order>(args.kind, &log, &codecs.orders, id, as_of, personal).await,
        AggregateKind::Payment => fold::<payments_command::domain::Payment>(args.kind, &log, &codecs.payments, id, as_of, personal).await,
    };
    if let Some(server) = registry_server {
        server.abort();
    }
    local.stop().await?;
    let history = history?;
    if history.history.is_empty() && history.ignored == 0 {
        bail!("No {} {id:?} in {}", args.kind, log.topic(topic_name(args.kind)));
    }
    println!("{}", serde_json::to_string_pretty(&history)?);
    Ok(history)
}

fn topic_name(kind: AggregateKind) -> &'static str {
    match kind {
        AggregateKind::User => schemas::users::UserEvent::TOPIC,
        AggregateKind::Ticket => schemas::tickets::TicketEvent::TOPIC,
        AggregateKind::Order => schemas::orders::OrderEvent::TOPIC,
        AggregateKind::Payment => schemas::payments::PaymentEvent::TOPIC,
    }
}

/// Folds the events of aggregate `id` up to `as_of`, reading its partition up to where it ended
/// when the fold began.
pub async fn fold<A>(
    kind: AggregateKind,
    log: &LogConfig,
    codec: &Arc<AvroCodec<A::Event>>,
    id: &str,
    as_of: AsOf,
    include_personal_data: bool,
) -> anyhow::Result<History>
where
    A: Aggregate + Serialize,
    A::Event: AvroEvent,
{
    let topic = EventTopic::of::<A::Event>();
    let full_name = codec.topic().to_string();
    let ends = EndOffsets::new(log)?;
    let partitions = ends.partition_count(&full_name).await.with_context(|| format!("Failed to look up {full_name}"))?;
    let partition = partition_for(id.as_bytes(), partitions);
    let reader = TopicReader::partition_from(log, &full_name, partition, 0)?;
    let mut remaining = reader.remaining_before(&reader.end_offsets());

    let mut state = A::default();
    let mut head = Head::default();
    let mut history = Vec::new();
    let mut ignored = 0;
    while let Some(record) = reader.next_within(&mut remaining).await? {
        if record.key.as_deref() != Some(id.as_bytes()) {
            continue;
        }
        let payload = record.payload.as_deref().unwrap_or_default();
        let Envelope { metadata, event } = waiting_for_registry(|| codec.decode(payload))
            .await
            .with_context(|| format!("{full_name} {partition}@{} cannot be read", record.position.offset))?;
        let past = match as_of {
            AsOf::Latest => false,
            AsOf::Time(ms) => metadata.occurred_at > ms,
            AsOf::Version(version) => metadata.aggregate_version > version,
        };
        if past {
            break;
        }
        if head.judge(&metadata) != Verdict::Valid {
            ignored += 1;
            continue;
        }
        head = Head::of(&metadata);
        state = state.evolve(&event);
        let mut fields: Vec<(String, apache_avro::types::Value)> =
            event.payload_fields().into_iter().map(|(name, value)| (name.to_string(), value)).collect();
        if !include_personal_data {
            topic.redact(event.schema().full_name, &mut fields);
        }
        history.push(Step {
            version: metadata.aggregate_version,
            event_type: event.event_type(),
            occurred_at: rfc3339_millis(metadata.occurred_at),
            partition,
            offset: record.position.offset,
            command_id: if include_personal_data || !topic.key_is_personal { metadata.command_id } else { REDACTED.into() },
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
            event: serde_json::Value::Object(fields.iter().map(|(k, v)| (k.clone(), json_value(v))).collect()),
            state: state_json(&state, &topic, include_personal_data),
        });
    }
    Ok(History {
        aggregate: kind.to_string(),
        id: if include_personal_data || !topic.key_is_personal { id.to_string() } else { REDACTED.into() },
        version: head.version,
        state: state_json(&state, &topic, include_personal_data),
        history,
        ignored,
    })
}

/// The state as JSON, its personal fields (named as in the events) redacted unless asked for.
fn state_json<A: Serialize>(state: &A, topic: &EventTopic, include_personal_data: bool) -> serde_json::Value {
    let mut json = serde_json::to_value(state).unwrap_or(serde_json::Value::Null);
    if !include_personal_data && let Some(object) = json.as_object_mut() {
        for personal in topic.personal_fields {
            if let Some(value) = object.get_mut(personal.field) {
                *value = REDACTED.into();
            }
        }
    }
    json
}
