//! The expiration worker: deadlines derived from the log, rebuilt by replaying it on start, and
//! fired within a second. Two kinds: an order's payment deadline (created with `expiresAt`,
//! cleared by cancel or completion) sends `ExpireOrder` to the order's owner; a ticket's hold
//! (`TicketReserved`, cleared by release or sale) whose order was never created sends
//! `ReleaseTicket`, so a hold left behind by a failed order never keeps a ticket off sale.
//! Both topics are judged with the arbiter rule like every other reader, so a duplicate or a
//! stale writer's event sets no deadline. No Redis.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orders_command::domain::{Order, OrderCommand, OrderStatus};
use orders_command::saga::release_command_id;
use platform::aggregate::{Aggregate, Envelope};
use platform::arbiter::{Verdict, VersionArbiter};
use platform::codec::{EventCodec, waiting_for_registry};
use platform::command::{CommandError, CommandRequest};
use platform::forwarding::CommandService;
use platform::log::{LogConfig, LogError, LogRecord, TopicReader};
use schemas::orders::OrderEvent;
use schemas::tickets::TicketEvent;
use tickets_command::domain::{Ticket, TicketCommand};
use tokio::sync::watch;

/// How often due deadlines are looked for.
const TICK: Duration = Duration::from_millis(100);

/// Command id of the expiry of an order: one per order, so several workers never act twice.
pub fn expire_command_id(order_id: &str) -> String {
    format!("expire:{order_id}")
}

/// What falls due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Deadline {
    /// An order's payment deadline.
    Order(String),
    /// A ticket's hold for an order.
    Hold {
        /// The held ticket.
        ticket_id: String,
        /// The order the hold is for.
        order_id: String,
    },
}

/// Pending deadlines (pure).
#[derive(Debug, Default)]
pub struct Deadlines {
    by_time: BTreeSet<(i64, Deadline)>,
    at: HashMap<Deadline, i64>,
    /// The deadline of each ticket's hold (a ticket has one hold at a time).
    holds: HashMap<String, Deadline>,
}

impl Deadlines {
    /// Folds a valid order event: a created order gets a deadline, a cancelled or completed
    /// one loses it.
    pub fn apply_order(&mut self, order_id: &str, event: &OrderEvent) {
        let deadline = Deadline::Order(order_id.to_string());
        match event {
            OrderEvent::Created(e) => self.set(deadline, e.expires_at),
            OrderEvent::Cancelled(_) | OrderEvent::Completed(_) => self.clear(&deadline),
            // The deadline stands: it is looked at again while a charge is in flight.
            OrderEvent::AwaitingPayment(_) | OrderEvent::PaymentDeclined(_) => {}
        }
    }

    /// Folds a valid ticket event: a reservation gets a deadline, a release or sale ends it.
    pub fn apply_ticket(&mut self, ticket_id: &str, event: &TicketEvent) {
        if let Some(previous) = self.holds.remove(ticket_id) {
            self.clear(&previous);
        }
        if let TicketEvent::Reserved(e) = event {
            let deadline = Deadline::Hold { ticket_id: ticket_id.to_string(), order_id: e.order_id.clone() };
            self.holds.insert(ticket_id.to_string(), deadline.clone());
            self.set(deadline, e.expires_at);
        }
    }

    /// Schedules `deadline` at `at`, replacing its earlier time.
    pub fn set(&mut self, deadline: Deadline, at: i64) {
        self.unschedule(&deadline);
        self.by_time.insert((at, deadline.clone()));
        self.at.insert(deadline, at);
    }

    fn unschedule(&mut self, deadline: &Deadline) {
        if let Some(at) = self.at.remove(deadline) {
            self.by_time.remove(&(at, deadline.clone()));
        }
    }

    /// Forgets a deadline.
    pub fn clear(&mut self, deadline: &Deadline) {
        self.unschedule(deadline);
        if let Deadline::Hold { ticket_id, .. } = deadline
            && self.holds.get(ticket_id) == Some(deadline)
        {
            self.holds.remove(ticket_id);
        }
    }

    /// Deadlines at or before `now`, earliest first.
    pub fn due(&self, now: i64) -> Vec<Deadline> {
        self.by_time.iter().take_while(|(at, _)| *at <= now).map(|(_, d)| d.clone()).collect()
    }

    /// How many deadlines are pending.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// True when none is pending.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// Health of the worker.
#[derive(Debug, Default)]
pub struct ExpirationHealth {
    caught_up: AtomicBool,
}

impl ExpirationHealth {
    /// True once the deadlines have been rebuilt from both topics.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }
}

/// What the worker reads and whom it tells.
pub struct ExpirationWorker {
    /// Decodes the orders topic.
    pub orders_codec: Arc<dyn EventCodec<OrderEvent>>,
    /// Decodes the tickets topic.
    pub tickets_codec: Arc<dyn EventCodec<TicketEvent>>,
    /// The command side of orders (expiries; its state tells whether an order exists).
    pub orders: Arc<CommandService<Order>>,
    /// The command side of tickets (releases of holds without an order).
    pub tickets: Arc<CommandService<Ticket>>,
}

/// One topic read from its start, judged with the arbiter rule.
struct JudgedTopic<E> {
    reader: TopicReader,
    codec: Arc<dyn EventCodec<E>>,
    arbiter: VersionArbiter,
    catching_up: std::collections::BTreeMap<i32, i64>,
}

impl<E: Clone + Send + Sync + 'static> JudgedTopic<E> {
    fn open(config: &LogConfig, codec: Arc<dyn EventCodec<E>>) -> Result<Self, LogError> {
        let reader = TopicReader::from_beginning(config, codec.topic())?;
        let catching_up = reader.remaining_before(&reader.end_offsets());
        Ok(Self { reader, codec, arbiter: VersionArbiter::default(), catching_up })
    }

    /// The event of a record when the arbiter judges it valid.
    async fn valid_event(&mut self, record: &LogRecord) -> Option<Envelope<E>> {
        if self.catching_up.get(&record.position.partition).is_some_and(|end| record.position.offset + 1 >= *end) {
            self.catching_up.remove(&record.position.partition);
        }
        let bytes = record.payload.as_deref()?;
        match waiting_for_registry(|| self.codec.decode(bytes)).await {
            Ok(envelope) => (self.arbiter.admit(&envelope.metadata) == Verdict::Valid).then_some(envelope),
            Err(error) => {
                // The aggregate ignores it too; the saga parks it.
                tracing::warn!(message = "Skipped an undecodable event.", topic = %record.topic, %error);
                None
            }
        }
    }

    /// True once the reader has reached the end offsets seen at start.
    fn caught_up(&mut self) -> bool {
        // The end may lie past records never delivered (transaction markers).
        self.reader.forget_reached(&mut self.catching_up);
        self.catching_up.is_empty()
    }
}

async fn next_record(reader: &TopicReader) -> Option<LogRecord> {
    match reader.next().await {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::warn!(message = "Failed to read the log.", %error);
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}

/// Runs the worker until `shutdown`.
pub async fn run_expiration(
    config: LogConfig,
    worker: ExpirationWorker,
    health: Arc<ExpirationHealth>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LogError> {
    let mut orders = JudgedTopic::open(&config, worker.orders_codec.clone())?;
    let mut tickets = JudgedTopic::open(&config, worker.tickets_codec.clone())?;
    let mut deadlines = Deadlines::default();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Mapped to (): the watch guard must not live across the other arms' awaits.
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return Ok(()),
            Some(record) = next_record(&orders.reader) => {
                if let Some(envelope) = orders.valid_event(&record).await {
                    deadlines.apply_order(&envelope.metadata.aggregate_id, &envelope.event);
                }
                platform::metrics::METRICS.expiration_pending(deadlines.len() as i64);
            }
            Some(record) = next_record(&tickets.reader) => {
                if let Some(envelope) = tickets.valid_event(&record).await {
                    deadlines.apply_ticket(&envelope.metadata.aggregate_id, &envelope.event);
                }
                platform::metrics::METRICS.expiration_pending(deadlines.len() as i64);
            }
            _ = ticker.tick() => {
                // Firing before both topics are read could expire an order that was paid.
                if !health.is_caught_up() {
                    if orders.caught_up() && tickets.caught_up() {
                        health.caught_up.store(true, Ordering::Relaxed);
                        tracing::info!(message = "Deadlines rebuilt from the log.", pending = deadlines.len());
                    }
                    continue;
                }
                let now = chrono::Utc::now().timestamp_millis();
                for deadline in deadlines.due(now) {
                    match fire(&worker, &deadline).await {
                        Fired::Settled => deadlines.clear(&deadline),
                        Fired::Later => deadlines.set(deadline, now + CHARGE_RECHECK_MS),
                        Fired::Failed => {}
                    }
                }
                platform::metrics::METRICS.expiration_pending(deadlines.len() as i64);
            }
        }
    }
}

/// How often a deadline that fell while a charge was in flight is looked at again.
const CHARGE_RECHECK_MS: i64 = 1000;

/// What acting on a due deadline did.
enum Fired {
    /// Done, or nothing left to do.
    Settled,
    /// A charge is in flight: the order may be payable again if it is declined.
    Later,
    /// The command failed; it is tried again at the next tick.
    Failed,
}

/// Acts on a due deadline.
async fn fire(worker: &ExpirationWorker, deadline: &Deadline) -> Fired {
    match deadline {
        Deadline::Order(order_id) => {
            let request = CommandRequest {
                aggregate_id: order_id.to_string(),
                command_id: expire_command_id(order_id),
                expected_version: None,
                correlation_id: format!("expiration:{order_id}"),
                causation_id: None,
                command: OrderCommand::ExpireOrder,
            };
            let result = worker.orders.execute(request).await;
            if result.as_ref().is_ok_and(|outcome| outcome.state.status == OrderStatus::AwaitingPayment) {
                return Fired::Later;
            }
            settled(result, "order", order_id)
        }
        Deadline::Hold { ticket_id, order_id } => {
            // An order that exists ends its hold itself when it lapses or is cancelled; a hold
            // is only this worker's to end when its order was never created.
            if worker.orders.pipeline().state(order_id).0.exists {
                return Fired::Settled;
            }
            let request = CommandRequest {
                aggregate_id: ticket_id.to_string(),
                command_id: release_command_id(order_id),
                expected_version: None,
                correlation_id: format!("expiration:{order_id}"),
                causation_id: None,
                command: TicketCommand::ReleaseTicket { order_id: order_id.clone() },
            };
            settled(worker.tickets.execute(request).await, "hold", order_id)
        }
    }
}

fn settled<A: Aggregate>(result: Result<platform::command::Outcome<A>, CommandError<A::Error>>, kind: &str, order_id: &str) -> Fired {
    match result {
        Ok(outcome) => {
            tracing::info!(message = "Deadline reached.", kind, %order_id, version = outcome.version);
            Fired::Settled
        }
        Err(CommandError::Rejected(error)) => {
            tracing::info!(message = "Nothing to do at the deadline.", kind, %order_id, %error);
            Fired::Settled
        }
        Err(error) => {
            tracing::warn!(message = "Failed to act on a deadline; retrying.", kind, %order_id, %error);
            Fired::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::orders::{OrderCancelled, OrderCompleted, OrderCreated};
    use schemas::tickets::{TicketReleased, TicketReserved};

    fn created(at: i64) -> OrderEvent {
        OrderEvent::Created(OrderCreated {
            user_id: "u".into(),
            ticket_id: "t".into(),
            ticket_title: "x".into(),
            ticket_price_minor: 1,
            ticket_currency: "USD".into(),
            expires_at: at,
        })
    }

    fn order(id: &str) -> Deadline {
        Deadline::Order(id.into())
    }

    #[test]
    fn deadlines_follow_the_orders_lifecycle() {
        let mut deadlines = Deadlines::default();
        deadlines.apply_order("a", &created(100));
        deadlines.apply_order("b", &created(50));
        deadlines.apply_order("c", &created(300));
        assert_eq!(deadlines.due(99), vec![order("b")]);
        assert_eq!(deadlines.due(100), vec![order("b"), order("a")]);
        deadlines.apply_order("b", &OrderEvent::Cancelled(OrderCancelled { ticket_id: "t".into(), reason: "cancelled".into() }));
        deadlines.apply_order("a", &OrderEvent::Completed(OrderCompleted { ticket_id: "t".into(), payment_id: "p".into() }));
        assert!(deadlines.due(200).is_empty());
        assert_eq!(deadlines.len(), 1);
        assert_eq!(deadlines.due(300), vec![order("c")]);
    }

    #[test]
    fn a_hold_has_a_deadline_until_released_or_replaced() {
        let hold = |order: &str| Deadline::Hold { ticket_id: "t".into(), order_id: order.into() };
        let mut deadlines = Deadlines::default();
        deadlines.apply_ticket("t", &TicketEvent::Reserved(TicketReserved { order_id: "o1".into(), expires_at: 100 }));
        assert_eq!(deadlines.due(100), vec![hold("o1")]);
        // The next reservation (after a lapsed hold) replaces it.
        deadlines.apply_ticket("t", &TicketEvent::Released(TicketReleased { order_id: "o1".into() }));
        deadlines.apply_ticket("t", &TicketEvent::Reserved(TicketReserved { order_id: "o2".into(), expires_at: 200 }));
        assert_eq!(deadlines.due(150), vec![]);
        assert_eq!(deadlines.due(200), vec![hold("o2")]);
        deadlines.apply_ticket("t", &TicketEvent::Released(TicketReleased { order_id: "o2".into() }));
        assert!(deadlines.is_empty());
    }
}
