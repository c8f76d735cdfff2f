//! The process manager that keeps orders, tickets and payments in step. The commands it sends
//! have ids derived from the order they concern (`release:<order>`, `sell:<order>`,
//! `complete:<order>`), so a redelivered event, or the HTTP handler having sent the same
//! command first, never acts twice.

use std::sync::Arc;
use std::time::Duration;

use platform::aggregate::{Envelope, EventMetadata};
use platform::codec::{CodecError, EventCodec};
use platform::command::{CommandError, CommandRequest};
use platform::forwarding::CommandService;
use platform::log::{DeadLetters, GroupConsumer, LogConfig, LogError, LogRecord};
use schemas::orders::OrderEvent;
use schemas::payments::PaymentEvent;
use tickets_command::domain::{Ticket, TicketCommand};
use tokio::sync::watch;

use crate::domain::{Order, OrderCommand};

/// Command id of the reservation made for an order.
pub fn reserve_command_id(order_id: &str) -> String {
    format!("reserve:{order_id}")
}

/// Command id of the release of an order's ticket.
pub fn release_command_id(order_id: &str) -> String {
    format!("release:{order_id}")
}

/// Command id of the sale of an order's ticket.
pub fn sell_command_id(order_id: &str) -> String {
    format!("sell:{order_id}")
}

/// Command id of the completion of a paid order.
pub fn complete_command_id(order_id: &str) -> String {
    format!("complete:{order_id}")
}

/// What an event calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Release the ticket an order held.
    ReleaseTicket {
        /// The ticket.
        ticket_id: String,
        /// The order.
        order_id: String,
    },
    /// Sell the ticket to the order.
    SellTicket {
        /// The ticket.
        ticket_id: String,
        /// The order.
        order_id: String,
    },
    /// Mark the order paid.
    CompleteOrder {
        /// The order.
        order_id: String,
        /// The payment.
        payment_id: String,
        /// When the payment happened.
        paid_at: i64,
    },
}

/// The reactions to an order event (pure).
pub fn react_to_order(metadata: &EventMetadata, event: &OrderEvent) -> Vec<Reaction> {
    let order_id = metadata.aggregate_id.clone();
    match event {
        OrderEvent::Created(_) => vec![],
        OrderEvent::Cancelled(e) => vec![Reaction::ReleaseTicket { ticket_id: e.ticket_id.clone(), order_id }],
        OrderEvent::Completed(e) => vec![Reaction::SellTicket { ticket_id: e.ticket_id.clone(), order_id }],
    }
}

/// The reactions to a payment event (pure).
pub fn react_to_payment(metadata: &EventMetadata, event: &PaymentEvent) -> Vec<Reaction> {
    match event {
        PaymentEvent::Created(e) => vec![Reaction::CompleteOrder {
            order_id: e.order_id.clone(),
            payment_id: metadata.aggregate_id.clone(),
            paid_at: metadata.occurred_at,
        }],
    }
}

/// The process manager's dependencies.
pub struct OrderSaga {
    /// Decodes the orders topic.
    pub orders_codec: Arc<dyn EventCodec<OrderEvent>>,
    /// Decodes the payments topic.
    pub payments_codec: Arc<dyn EventCodec<PaymentEvent>>,
    /// Ticket commands.
    pub tickets: Arc<CommandService<Ticket>>,
    /// Order commands.
    pub orders: Arc<CommandService<Order>>,
    /// Where undecodable events go.
    pub dead_letters: DeadLetters,
}

enum Decoded {
    Order(Envelope<OrderEvent>),
    Payment(Envelope<PaymentEvent>),
}

impl OrderSaga {
    async fn decode(&self, record: &LogRecord) -> Result<Decoded, CodecError> {
        let bytes = record.payload.as_deref().ok_or_else(|| CodecError::Undecodable("no value".into()))?;
        if record.topic == self.orders_codec.topic() {
            self.orders_codec.decode(bytes).await.map(Decoded::Order)
        } else {
            self.payments_codec.decode(bytes).await.map(Decoded::Payment)
        }
    }

    /// Handles one record until done: retries while a dependency is down, parks poison.
    pub async fn handle(&self, record: &LogRecord) -> Result<(), LogError> {
        let decoded = loop {
            match self.decode(record).await {
                Ok(decoded) => break decoded,
                Err(CodecError::RegistryUnavailable(reason)) => {
                    tracing::warn!(message = "Waiting for the schema registry.", %reason);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => {
                    self.dead_letters.park(record, "order-saga", &error.to_string()).await?;
                    return Ok(());
                }
            }
        };
        let (metadata, reactions) = match &decoded {
            Decoded::Order(e) => (&e.metadata, react_to_order(&e.metadata, &e.event)),
            Decoded::Payment(e) => (&e.metadata, react_to_payment(&e.metadata, &e.event)),
        };
        for reaction in reactions {
            self.act(metadata, reaction).await;
        }
        Ok(())
    }

    async fn act(&self, cause: &EventMetadata, reaction: Reaction) {
        loop {
            let outcome = match &reaction {
                Reaction::ReleaseTicket { ticket_id, order_id } => self
                    .tickets
                    .execute(request(cause, ticket_id, release_command_id(order_id), TicketCommand::ReleaseTicket {
                        order_id: order_id.clone(),
                    }))
                    .await
                    .map(|_| ())
                    .map_err(describe),
                Reaction::SellTicket { ticket_id, order_id } => self
                    .tickets
                    .execute(request(cause, ticket_id, sell_command_id(order_id), TicketCommand::SellTicket {
                        order_id: order_id.clone(),
                    }))
                    .await
                    .map(|_| ())
                    .map_err(describe),
                Reaction::CompleteOrder { order_id, payment_id, paid_at } => self
                    .orders
                    .execute(request(cause, order_id, complete_command_id(order_id), OrderCommand::CompleteOrder {
                        payment_id: payment_id.clone(),
                        now: *paid_at,
                    }))
                    .await
                    .map(|_| ())
                    .map_err(describe),
            };
            match outcome {
                Ok(()) => return,
                Err(Failure::Refused(reason)) => {
                    // A rule refused it (e.g. paying an order that expired meanwhile): nothing a
                    // retry can change. Say so loudly; a refund may be needed.
                    tracing::error!(message = "A process-manager command was refused.", ?reaction, %reason);
                    return;
                }
                Err(Failure::Retry(reason)) => {
                    tracing::warn!(message = "A process-manager command failed; retrying.", ?reaction, %reason);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

enum Failure {
    Refused(String),
    Retry(String),
}

fn describe<E: std::error::Error + 'static>(error: CommandError<E>) -> Failure {
    match error {
        CommandError::Rejected(e) => Failure::Refused(e.to_string()),
        CommandError::Conflict { .. } | CommandError::Unavailable(_) | CommandError::NotReady => {
            Failure::Retry(error.to_string())
        }
    }
}

fn request<C>(cause: &EventMetadata, aggregate_id: &str, command_id: String, command: C) -> CommandRequest<C> {
    CommandRequest {
        aggregate_id: aggregate_id.to_string(),
        command_id,
        expected_version: None,
        correlation_id: cause.correlation_id.clone(),
        causation_id: Some(cause.event_id.to_string()),
        occurred_at: chrono::Utc::now().timestamp_millis(),
        command,
    }
}

/// Runs the process manager as a member of `<namespace>.order-saga` until `shutdown`.
pub async fn run_saga(config: LogConfig, saga: OrderSaga, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
    let topics = [saga.orders_codec.topic().to_string(), saga.payments_codec.topic().to_string()];
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let consumer = GroupConsumer::subscribe(&config, &config.group("order-saga"), &topics)?;
    loop {
        let record = tokio::select! {
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            record = consumer.next() => record,
        };
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(message = "Failed to read the log.", %error);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let span = tracing::info_span!("order_saga", topic = %record.topic, offset = record.position.offset);
        platform::telemetry::continue_trace(&span, &record.headers);
        if let Err(error) = tracing::Instrument::instrument(saga.handle(&record), span).await {
            // Parking a poison record failed (the log is down): read it again later.
            tracing::warn!(message = "Failed to handle a record; it will be redelivered.", %error);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        // After a rebalance took the partition away this fails; the new owner replays it.
        if let Err(error) = consumer.store_offset(&record) {
            tracing::warn!(message = "Failed to store a process-manager offset.", %error);
        }
    }
    if let Err(error) = consumer.commit() {
        tracing::warn!(message = "Failed to commit process-manager offsets on shutdown.", %error);
    }
    Ok(())
}
