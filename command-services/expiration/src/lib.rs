//! The expiration worker: payment deadlines derived from the orders topic (created with
//! `expiresAt`, cleared by cancel or completion), rebuilt by replaying the topic on start, and
//! fired within a second by sending `ExpireOrder` to the order's owner. No Redis.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orders_command::domain::{Order, OrderCommand};
use platform::codec::{CodecError, EventCodec};
use platform::command::{CommandError, CommandRequest};
use platform::forwarding::CommandService;
use platform::log::{LogConfig, LogError, TopicReader};
use schemas::orders::OrderEvent;
use tokio::sync::watch;

/// How often due deadlines are looked for.
const TICK: Duration = Duration::from_millis(100);

/// Command id of the expiry of an order: one per order, so several workers never act twice.
pub fn expire_command_id(order_id: &str) -> String {
    format!("expire:{order_id}")
}

/// Pending payment deadlines (pure).
#[derive(Debug, Default)]
pub struct Deadlines {
    by_time: BTreeSet<(i64, String)>,
    by_order: HashMap<String, i64>,
}

impl Deadlines {
    /// Folds an order event: a created order gets a deadline, a cancelled or completed one
    /// loses it.
    pub fn apply(&mut self, order_id: &str, event: &OrderEvent) {
        match event {
            OrderEvent::Created(e) => {
                self.clear(order_id);
                self.by_time.insert((e.expires_at, order_id.to_string()));
                self.by_order.insert(order_id.to_string(), e.expires_at);
            }
            OrderEvent::Cancelled(_) | OrderEvent::Completed(_) => self.clear(order_id),
        }
    }

    /// Forgets an order's deadline.
    pub fn clear(&mut self, order_id: &str) {
        if let Some(at) = self.by_order.remove(order_id) {
            self.by_time.remove(&(at, order_id.to_string()));
        }
    }

    /// Orders whose deadline is at or before `now`, earliest first.
    pub fn due(&self, now: i64) -> Vec<String> {
        self.by_time.iter().take_while(|(at, _)| *at <= now).map(|(_, id)| id.clone()).collect()
    }

    /// How many deadlines are pending.
    pub fn len(&self) -> usize {
        self.by_order.len()
    }

    /// True when none is pending.
    pub fn is_empty(&self) -> bool {
        self.by_order.is_empty()
    }
}

/// Health of the worker.
#[derive(Debug, Default)]
pub struct ExpirationHealth {
    caught_up: AtomicBool,
}

impl ExpirationHealth {
    /// True once the deadlines have been rebuilt from the whole topic.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }
}

/// Runs the worker until `shutdown`.
pub async fn run_expiration(
    config: LogConfig,
    codec: Arc<dyn EventCodec<OrderEvent>>,
    orders: Arc<CommandService<Order>>,
    health: Arc<ExpirationHealth>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LogError> {
    let reader = TopicReader::from_beginning(&config, codec.topic())?;
    let mut catching_up = reader.remaining_before(&reader.end_offsets());
    if catching_up.is_empty() {
        health.caught_up.store(true, Ordering::Relaxed);
    }
    let mut deadlines = Deadlines::default();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Mapped to (): the watch guard must not live across the other arms' awaits.
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return Ok(()),
            record = reader.next() => {
                let record = match record {
                    Ok(record) => record,
                    Err(error) => {
                        tracing::warn!(message = "Failed to read the orders topic.", %error);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if let Some(end) = catching_up.get(&record.position.partition).copied()
                    && record.position.offset + 1 >= end
                {
                    catching_up.remove(&record.position.partition);
                    if catching_up.is_empty() {
                        health.caught_up.store(true, Ordering::Relaxed);
                        tracing::info!(message = "Deadlines rebuilt from the log.", pending = deadlines.len());
                    }
                }
                let Some(bytes) = record.payload.as_deref() else { continue };
                loop {
                    match codec.decode(bytes).await {
                        Ok(envelope) => {
                            deadlines.apply(&envelope.metadata.aggregate_id, &envelope.event);
                            break;
                        }
                        Err(CodecError::RegistryUnavailable(reason)) => {
                            tracing::warn!(message = "Waiting for the schema registry.", %reason);
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(error) => {
                            // The order aggregate ignores it too; the saga parks it.
                            tracing::warn!(message = "Skipped an undecodable order event.", %error);
                            break;
                        }
                    }
                }
                platform::metrics::METRICS.expiration_pending(deadlines.len() as i64);
            }
            _ = ticker.tick() => {
                // Firing before the whole topic is read could expire an order that was paid.
                if !health.is_caught_up() {
                    // The end may lie past records never delivered (transaction markers).
                    reader.forget_reached(&mut catching_up);
                    if catching_up.is_empty() {
                        health.caught_up.store(true, Ordering::Relaxed);
                        tracing::info!(message = "Deadlines rebuilt from the log.", pending = deadlines.len());
                    }
                    continue;
                }
                let now = chrono::Utc::now().timestamp_millis();
                for order_id in deadlines.due(now) {
                    if expire(&orders, &order_id, now).await {
                        deadlines.clear(&order_id);
                    }
                }
                platform::metrics::METRICS.expiration_pending(deadlines.len() as i64);
            }
        }
    }
}

/// Sends `ExpireOrder`; true when the deadline is settled (expired, or nothing left to do).
async fn expire(orders: &CommandService<Order>, order_id: &str, now: i64) -> bool {
    let request = CommandRequest {
        aggregate_id: order_id.to_string(),
        command_id: expire_command_id(order_id),
        expected_version: None,
        correlation_id: format!("expiration:{order_id}"),
        causation_id: None,
        occurred_at: now,
        command: OrderCommand::ExpireOrder { now },
    };
    match orders.execute(request).await {
        Ok(outcome) => {
            tracing::info!(message = "Order expired.", %order_id, status = outcome.state.status.as_api_str());
            true
        }
        Err(CommandError::Rejected(error)) => {
            tracing::info!(message = "Nothing to expire.", %order_id, %error);
            true
        }
        Err(error) => {
            tracing::warn!(message = "Failed to expire an order; retrying.", %order_id, %error);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::orders::{OrderCancelled, OrderCompleted, OrderCreated};

    fn created(at: i64) -> OrderEvent {
        OrderEvent::Created(OrderCreated {
            user_id: "u".into(),
            ticket_id: "t".into(),
            ticket_title: "x".into(),
            ticket_price_cents: 1,
            expires_at: at,
        })
    }

    #[test]
    fn deadlines_follow_the_orders_lifecycle() {
        let mut deadlines = Deadlines::default();
        deadlines.apply("a", &created(100));
        deadlines.apply("b", &created(50));
        deadlines.apply("c", &created(300));
        assert_eq!(deadlines.due(99), vec!["b".to_string()]);
        assert_eq!(deadlines.due(100), vec!["b".to_string(), "a".to_string()]);
        deadlines.apply("b", &OrderEvent::Cancelled(OrderCancelled { ticket_id: "t".into(), reason: "cancelled".into() }));
        deadlines.apply("a", &OrderEvent::Completed(OrderCompleted { ticket_id: "t".into(), payment_id: "p".into() }));
        assert!(deadlines.due(200).is_empty());
        assert_eq!(deadlines.len(), 1);
        assert_eq!(deadlines.due(300), vec!["c".to_string()]);
    }
}
