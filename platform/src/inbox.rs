//! The inbox of an aggregate type: the commands process managers send it travel through a
//! topic of its own (`<topic>.inbox`, partitioned and keyed like the aggregate's topic). A
//! process manager appends them in the same transaction as the offsets of the events that
//! caused them (consume-transform-produce), so a crash can neither lose a reaction nor make
//! it twice; the aggregate's command side executes each inbox command through its
//! [`CommandService`], where the command id makes a redelivered one a no-op.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::command::{CommandError, CommandRequest};
use crate::forwarding::{CommandService, Forwardable};
use crate::log::{DeadLetters, GroupConsumer, LogConfig, LogError, LogRecord, OutgoingRecord};
use crate::ownership::partition_for;

/// The inbox topic of an aggregate topic (full names).
pub fn inbox_topic(topic: &str) -> String {
    format!("{topic}.inbox")
}

/// Header naming the command type of an inbox record, for people reading the topic.
pub const COMMAND_HEADER: &str = "command_type";

/// A command on its way to an aggregate's inbox.
#[derive(Debug, Clone)]
pub struct InboxCommand {
    /// The inbox topic.
    pub topic: String,
    /// The partition of the target aggregate.
    pub partition: i32,
    /// The target aggregate's id (the record key).
    pub key: String,
    /// The JSON of the [`CommandRequest`].
    pub payload: Vec<u8>,
    /// What kind of command it is ([`COMMAND_HEADER`]).
    pub command_type: &'static str,
    /// Trace context of the reaction that sent it.
    pub trace: Vec<(String, String)>,
}

impl InboxCommand {
    /// A command for the aggregate `request.aggregate_id` of `topic`, which has `partitions`
    /// partitions (as its inbox has).
    pub fn new<C: Serialize>(
        topic: &str,
        partitions: i32,
        command_type: &'static str,
        request: &CommandRequest<C>,
    ) -> Self {
        Self {
            topic: inbox_topic(topic),
            partition: partition_for(request.aggregate_id.as_bytes(), partitions),
            key: request.aggregate_id.clone(),
            payload: serde_json::to_vec(request).expect("a command request serialises"),
            command_type,
            trace: crate::telemetry::current_trace_headers().into_iter().collect(),
        }
    }

    /// The record to append for it.
    pub fn record(&self) -> OutgoingRecord<'_> {
        let mut headers: Vec<(&str, &[u8])> = vec![(COMMAND_HEADER, self.command_type.as_bytes())];
        headers.extend(self.trace.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
        OutgoingRecord { topic: &self.topic, partition: self.partition, key: self.key.as_bytes(), payload: &self.payload, headers }
    }
}

/// Executes every command of `topic`'s inbox through `service` until `shutdown`: a member of
/// the group `<inbox>.executors`. A command is retried while the command side is unavailable
/// or loses a race; a refused one is logged (nothing a retry can change); an unreadable one is
/// parked in the dead-letter topic. The inbox offset is stored after the outcome.
pub async fn run_inbox<A>(
    config: LogConfig,
    topic: String,
    service: Arc<CommandService<A>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LogError>
where
    A: Forwardable,
    A::Command: Clone + Serialize + DeserializeOwned,
    A::Error: Serialize + DeserializeOwned,
{
    let inbox = inbox_topic(&topic);
    let dead_letters = DeadLetters::open(&config).await?;
    let consumer = GroupConsumer::subscribe(&config, &format!("{inbox}.executors"), &[&inbox])?;
    loop {
        let record = tokio::select! {
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            record = consumer.next() => record,
        };
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(message = "Failed to read an inbox.", inbox = %inbox, %error);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let span = tracing::info_span!("inbox", inbox = %inbox, offset = record.position.offset);
        crate::telemetry::continue_trace(&span, &record.headers);
        let handled = tracing::Instrument::instrument(execute_record(&service, &dead_letters, &record, &shutdown), span).await;
        if let Err(error) = handled {
            tracing::warn!(message = "Failed to park an unreadable inbox command; it will be read again.", %error);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        if *shutdown.borrow() {
            break;
        }
        // After a rebalance took the partition away this fails; the new owner runs it again.
        if let Err(error) = consumer.store_offset(&record) {
            tracing::warn!(message = "Failed to store an inbox offset.", %error);
        }
    }
    if let Err(error) = consumer.commit() {
        tracing::warn!(message = "Failed to commit inbox offsets on shutdown.", %error);
    }
    Ok(())
}

async fn execute_record<A>(
    service: &CommandService<A>,
    dead_letters: &DeadLetters,
    record: &LogRecord,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), LogError>
where
    A: Forwardable,
    A::Command: Clone + Serialize + DeserializeOwned,
    A::Error: Serialize + DeserializeOwned,
{
    let request = match serde_json::from_slice::<CommandRequest<A::Command>>(record.payload.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(error) => {
            dead_letters.park(record, "inbox", &format!("unreadable command: {error}")).await?;
            return Ok(());
        }
    };
    loop {
        match service.execute(request.clone()).await {
            Ok(_) => return Ok(()),
            Err(CommandError::Rejected(error)) => {
                // A rule refused it (e.g. completing an order that expired meanwhile): a retry
                // cannot change that. Say so loudly; a refund may be needed.
                tracing::error!(message = "A process-manager command was refused.", aggregate_id = %request.aggregate_id, command_id = %request.command_id, %error);
                return Ok(());
            }
            Err(error) => {
                if *shutdown.borrow() {
                    // Not done: the offset is not stored, so the next member runs it.
                    return Ok(());
                }
                tracing::warn!(message = "A process-manager command failed; retrying.", command_id = %request.command_id, %error);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
