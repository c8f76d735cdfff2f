//! The process manager that keeps orders, tickets and payments in step. It appends the
//! commands an event calls for to the target aggregates' inboxes in one transaction with the
//! event's offset (see `platform::inbox`), and their ids derive from the order they concern
//! (`release:<order>`, `sell:<order>`, `complete:<order>`), so a redelivered event, or the HTTP
//! handler having sent the same command first, never acts twice.

use std::sync::Arc;
use std::time::Duration;

use platform::aggregate::{Envelope, EventMetadata};
use platform::codec::{CodecError, EventCodec, waiting_for_registry};
use platform::command::CommandRequest;
use platform::inbox::InboxCommand;
use platform::arbiter::Verdict;
use platform::log::{DeadLetters, GroupConsumer, LogConfig, LogError, LogRecord, TransactionalProducer};
use platform::reaction::JudgedPartitions;
use schemas::orders::OrderEvent;
use schemas::payments::PaymentEvent;
use tickets_command::domain::TicketCommand;
use tokio::sync::watch;

use crate::domain::OrderCommand;

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
    },
}

/// The reactions to an order event (pure).
pub fn react_to_order(metadata: &EventMetadata, event: &OrderEvent) -> Vec<Reaction> {
    let order_id = metadata.aggregate_id.clone();
    match event {
        OrderEvent::Created(_) => vec![],
        OrderEvent::Cancelled(e) => vec![Reaction::ReleaseTicket { ticket_id: e.ticket_id.clone(), order_id }],
        OrderEvent::Completed(e) => vec![Reaction::SellTicket { ticket_id: e.ticket_id.clone(), order_id }],
        OrderEvent::AwaitingPayment(_) | OrderEvent::PaymentDeclined(_) => vec![],
    }
}

/// The reactions to a payment event (pure).
pub fn react_to_payment(metadata: &EventMetadata, event: &PaymentEvent) -> Vec<Reaction> {
    match event {
        PaymentEvent::Created(e) => vec![Reaction::CompleteOrder {
            order_id: e.order_id.clone(),
            payment_id: metadata.aggregate_id.clone(),
        }],
        // The payments service finishes attempts and refunds (see its settlement).
        PaymentEvent::Started(_) | PaymentEvent::Declined(_) | PaymentEvent::Refunded(_) => vec![],
    }
}

/// The process manager's dependencies.
pub struct OrderSaga {
    /// Decodes the orders topic.
    pub orders_codec: Arc<dyn EventCodec<OrderEvent>>,
    /// Decodes the payments topic.
    pub payments_codec: Arc<dyn EventCodec<PaymentEvent>>,
    /// The tickets topic (full name) and its partition count: release and sell commands go to
    /// its inbox.
    pub tickets_topic: (String, i32),
    /// The orders topic (full name) and its partition count: complete commands go to its inbox.
    pub orders_topic: (String, i32),
    /// Where undecodable events go.
    pub dead_letters: DeadLetters,
}

enum Decoded {
    Order(Envelope<OrderEvent>),
    Payment(Envelope<PaymentEvent>),
}

/// The arbiter's state of the partitions the process manager reads.
pub struct SagaJudges {
    orders: JudgedPartitions<OrderEvent>,
    payments: JudgedPartitions<PaymentEvent>,
}

impl SagaJudges {
    /// Follows the saga's topics.
    pub fn new(config: &LogConfig, saga: &OrderSaga) -> Self {
        Self {
            orders: JudgedPartitions::new(config, saga.orders_codec.clone()),
            payments: JudgedPartitions::new(config, saga.payments_codec.clone()),
        }
    }

    async fn judge(&mut self, record: &LogRecord, decoded: &Decoded, epoch: u64) -> Verdict {
        loop {
            let judged = match decoded {
                Decoded::Order(e) => self.orders.judge(record, &e.metadata, epoch).await,
                Decoded::Payment(e) => self.payments.judge(record, &e.metadata, epoch).await,
            };
            match judged {
                Ok(verdict) => return verdict,
                Err(error) => {
                    tracing::warn!(message = "Failed to catch up the arbiter; retrying.", %error);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// How many records one transaction of the process manager covers at most.
const MAX_BATCH: usize = 200;

impl OrderSaga {
    async fn decode(&self, record: &LogRecord) -> Result<Decoded, CodecError> {
        let bytes = record.payload.as_deref().ok_or_else(|| CodecError::Undecodable("no value".into()))?;
        if *record.topic == *self.orders_codec.topic() {
            self.orders_codec.decode(bytes).await.map(Decoded::Order)
        } else {
            self.payments_codec.decode(bytes).await.map(Decoded::Payment)
        }
    }

    /// The inbox commands one record calls for: waits while the registry is down, parks
    /// poison in the dead-letter topic (retrying while the log is down) and calls for nothing,
    /// and calls for nothing either when the arbiter rule rejects the event (a duplicate or a
    /// stale writer's). `epoch` is the consumer's assignment epoch when it read the record.
    pub async fn commands_for(&self, judges: &mut SagaJudges, record: &LogRecord, epoch: u64) -> Vec<InboxCommand> {
        let decoded = match waiting_for_registry(|| self.decode(record)).await {
            Ok(decoded) => decoded,
            Err(error) => {
                while let Err(park_error) = self.dead_letters.park(record, "order-saga", &error.to_string()).await {
                    tracing::warn!(message = "Failed to park a poison record; retrying.", error = %park_error);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                return Vec::new();
            }
        };
        let verdict = judges.judge(record, &decoded, epoch).await;
        if verdict != Verdict::Valid {
            tracing::debug!(message = "No reaction to an event the arbiter rejects.", ?verdict, offset = record.position.offset);
            return Vec::new();
        }
        self.commands_of(&decoded)
    }

    /// The inbox commands a parked record calls for, decoded again now (an operator's replay of
    /// a dead letter, once what made it unreadable is fixed). Not judged: the operator vouches
    /// for it, and the commands' ids make a reaction that already happened a no-op.
    pub async fn replay_commands(&self, record: &LogRecord) -> Result<Vec<InboxCommand>, CodecError> {
        Ok(self.commands_of(&self.decode(record).await?))
    }

    /// The inbox commands a decoded event calls for.
    fn commands_of(&self, decoded: &Decoded) -> Vec<InboxCommand> {
        let (metadata, reactions) = match decoded {
            Decoded::Order(e) => (&e.metadata, react_to_order(&e.metadata, &e.event)),
            Decoded::Payment(e) => (&e.metadata, react_to_payment(&e.metadata, &e.event)),
        };
        reactions.into_iter().map(|reaction| self.command(metadata, reaction)).collect()
    }

    fn command(&self, cause: &EventMetadata, reaction: Reaction) -> InboxCommand {
        let (tickets, ticket_partitions) = (&self.tickets_topic.0, self.tickets_topic.1);
        let (orders, order_partitions) = (&self.orders_topic.0, self.orders_topic.1);
        match reaction {
            Reaction::ReleaseTicket { ticket_id, order_id } => InboxCommand::new(
                tickets,
                ticket_partitions,
                "ReleaseTicket",
                &request(cause, &ticket_id, release_command_id(&order_id), TicketCommand::ReleaseTicket { order_id }),
            ),
            Reaction::SellTicket { ticket_id, order_id } => InboxCommand::new(
                tickets,
                ticket_partitions,
                "SellTicket",
                &request(cause, &ticket_id, sell_command_id(&order_id), TicketCommand::SellTicket { order_id }),
            ),
            Reaction::CompleteOrder { order_id, payment_id } => InboxCommand::new(
                orders,
                order_partitions,
                "CompleteOrder",
                &request(
                    cause,
                    &order_id,
                    complete_command_id(&order_id),
                    OrderCommand::CompleteOrder { payment_id },
                ),
            ),
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
        command,
    }
}

/// Appends a batch's commands and commits the batch's offsets in one transaction.
async fn commit_batch(
    producer: &TransactionalProducer,
    consumer: &GroupConsumer,
    batch: &[(LogRecord, Vec<InboxCommand>)],
) -> Result<(), LogError> {
    let mut transaction = producer.begin().await?;
    for command in batch.iter().flat_map(|(_, commands)| commands) {
        transaction.send(&command.record())?;
    }
    transaction.consume(consumer, batch.iter().map(|(record, _)| record))?;
    transaction.commit().await?;
    Ok(())
}

/// Runs the process manager as a member of `<namespace>.order-saga` until `shutdown`: it reads
/// order and payment events and, per batch, appends the commands they call for to the target
/// aggregates' inboxes in one transaction with the batch's offsets (consume-transform-produce).
pub async fn run_saga(config: LogConfig, saga: OrderSaga, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
    let topics = [saga.orders_codec.topic().to_string(), saga.payments_codec.topic().to_string()];
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let group = config.group("order-saga");
    let consumer = GroupConsumer::subscribe_transactional(&config, &group, &topics)?;
    // One id per member: the group's generation, sent with the offsets, fences a member that
    // lost its partitions (KIP-447), and the broker aborts a dead member's open transaction at
    // its timeout.
    let producer = TransactionalProducer::new(&config, &format!("{group}.{}", uuid::Uuid::new_v4()));
    let mut judges = SagaJudges::new(&config, &saga);
    loop {
        let first = tokio::select! {
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            record = consumer.next() => record,
        };
        let mut records = match first {
            Ok(record) => vec![record],
            Err(error) => {
                tracing::warn!(message = "Failed to read the log.", %error);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Whatever else has arrived joins the same transaction.
        while records.len() < MAX_BATCH {
            match consumer.next_within_time(Duration::from_millis(2)).await {
                Ok(Some(record)) => records.push(record),
                _ => break,
            }
        }
        let epoch = consumer.assignment_epoch();
        let mut batch = Vec::with_capacity(records.len());
        for record in records {
            let span = tracing::info_span!("order_saga", topic = %record.topic, offset = record.position.offset);
            platform::telemetry::continue_trace(&span, &record.headers);
            let commands = tracing::Instrument::instrument(saga.commands_for(&mut judges, &record, epoch), span).await;
            batch.push((record, commands));
        }
        loop {
            match commit_batch(&producer, &consumer, &batch).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(message = "A process-manager transaction failed; retrying.", %error);
                    // Records of partitions this member lost are the new owner's to redo.
                    batch.retain(|(record, _)| consumer.is_assigned(&record.topic, record.position.partition));
                    if batch.is_empty() || *shutdown.borrow() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    Ok(())
}
