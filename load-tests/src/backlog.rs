//! A backlog of ticket events written straight to the log, encoded exactly as the tickets
//! command service encodes them, for the projector and the replay to chew through.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use platform::aggregate::{Envelope, EventMetadata};
use platform::codec::EventCodec;
use platform::log::LogConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use schemas::codec::{AvroCodec, registry_settings};
use schemas::events::AvroEvent;
use schemas::tickets::{TicketCreated, TicketEvent, TicketUpdated};

/// Events per ticket: one `TicketCreated`, then `TicketUpdated`s.
pub const EVENTS_PER_TICKET: u64 = 10;

/// One encoded record: key (the ticket id), value, `event_type` header.
pub type EncodedEvent = (String, Vec<u8>, &'static str);

/// Encodes `events` ticket events (tickets of [`EVENTS_PER_TICKET`] events each) with the
/// registry at `registry_url`, calling `progress(done)` now and then.
pub async fn encode_ticket_events(
    config: &LogConfig,
    registry_url: &str,
    events: u64,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Vec<EncodedEvent>> {
    let codec = AvroCodec::<TicketEvent>::new(config.topic(TicketEvent::TOPIC), registry_settings(registry_url)?);
    let now = chrono::Utc::now().timestamp_millis();
    let mut encoded = Vec::with_capacity(events as usize);
    let mut aggregate_id = String::new();
    for n in 0..events {
        let version = (n % EVENTS_PER_TICKET) as i64 + 1;
        if version == 1 {
            aggregate_id = uuid::Uuid::new_v4().to_string();
        }
        let price_minor = 1_000 + (n % 9_000) as i64;
        let event = if version == 1 {
            TicketEvent::Created(TicketCreated { title: format!("backlog {n}"), price_minor, currency: "USD".into(), user_id: "backlog-seller".into() })
        } else {
            TicketEvent::Updated(TicketUpdated { title: format!("backlog {n}"), price_minor, currency: "USD".into(), user_id: "backlog-seller".into() })
        };
        let envelope = Envelope {
            metadata: EventMetadata {
                event_id: uuid::Uuid::new_v4(),
                aggregate_id: aggregate_id.clone(),
                aggregate_version: version,
                command_id: format!("backlog:{n}"),
                command_event_index: 0,
                command_event_count: 1,
                occurred_at: now,
                correlation_id: format!("backlog:{n}"),
                causation_id: None,
            },
            event,
        };
        let value = codec.encode(&envelope).await.context("Failed to encode a backlog event")?;
        encoded.push((aggregate_id.clone(), value, envelope.event.event_type()));
        if n % 50_000 == 0 {
            progress(n);
        }
    }
    Ok(encoded)
}

/// Appends `records` to the tickets topic with a batching producer (`acks=all`, keyed with
/// the murmur2 partitioner like every producer of the system), calling `progress(done)` once a
/// second. Returns how long the appends took.
pub async fn append(
    config: &LogConfig,
    records: &[EncodedEvent],
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Duration> {
    let topic = config.topic(TicketEvent::TOPIC);
    let mut client = config.producer_config();
    client
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000");
    let producer: FutureProducer = client.create()?;
    let started = Instant::now();
    let mut next_progress = Duration::from_secs(1);
    let mut pending = FuturesUnordered::new();
    let mut done = 0u64;
    for (key, value, event_type) in records {
        let headers = OwnedHeaders::new().insert(Header { key: "event_type", value: Some(event_type.as_bytes()) });
        let record = FutureRecord::to(&topic).key(key.as_str()).payload(value.as_slice()).headers(headers);
        pending.push(producer.send(record, Timeout::After(Duration::from_secs(120))));
        while pending.len() >= 50_000 {
            acknowledged(pending.next().await)?;
            done += 1;
        }
        if started.elapsed() >= next_progress {
            next_progress += Duration::from_secs(1);
            progress(done);
        }
    }
    while let Some(result) = pending.next().await {
        acknowledged(Some(result))?;
        done += 1;
    }
    progress(done);
    Ok(started.elapsed())
}

fn acknowledged(result: Option<rdkafka::producer::future_producer::OwnedDeliveryResult>) -> anyhow::Result<()> {
    match result {
        Some(Err((error, _))) => Err(error).context("A backlog event was not acknowledged"),
        _ => Ok(()),
    }
}
