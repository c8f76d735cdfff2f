//! Taking a payment exactly once: the attempt is recorded before the gateway is asked (see
//! the Payment aggregate), charged with the attempt's idempotency key, and its outcome recorded;
//! a charge its order can no longer take is refunded through the gateway. The same steps serve
//! `POST /api/payments` and the reconciler, which finishes what a crash interrupted: the same
//! key charges nothing twice, and every record command has an id of its own attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orders_command::domain::{Order, OrderCommand, OrderStatus};
use orders_command::saga::{complete_command_id, sell_command_id};
use platform::command::{CommandError, CommandRequest, Outcome};
use platform::forwarding::CommandService;
use tickets_command::domain::{Ticket, TicketCommand};
use tokio::sync::watch;

use crate::domain::{Attempt, Payment, PaymentCommand, PaymentError};
use crate::gateway::{ChargeError, PaymentGateway};

/// How a payment attempt ended.
#[derive(Debug)]
pub enum Settled {
    /// Charged; the order is complete.
    Paid {
        /// The completed order.
        completed: Box<Outcome<Order>>,
        /// The sale of its ticket, when it went through at once (the saga sells it otherwise).
        sold: Option<Box<Outcome<Ticket>>>,
    },
    /// The gateway refused the card: the order is payable again.
    Declined(String),
    /// Charged, but the order could no longer take it: the charge was given back.
    Refunded(String),
}

/// Why an attempt has no outcome yet.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The gateway or the log did not answer; the attempt stays in flight and is finished by a
    /// retry with the same key (the client's, or the reconciler's).
    #[error("{0}")]
    Unavailable(String),
    /// A bug: the gateway saw the attempt's key with other parameters.
    #[error("{0}")]
    Unexpected(String),
}

fn unavailable<E: std::error::Error + 'static>(error: CommandError<E>) -> SettleError {
    SettleError::Unavailable(error.to_string())
}

fn request<C>(aggregate_id: &str, command_id: String, command: C) -> CommandRequest<C> {
    CommandRequest::from_client(aggregate_id, command_id, command)
}

/// Everything a payment's steps act on.
pub struct Settlement {
    /// The command side of payments.
    pub payments: Arc<CommandService<Payment>>,
    /// The command side of orders.
    pub orders: Arc<CommandService<Order>>,
    /// The command side of tickets.
    pub tickets: Arc<CommandService<Ticket>>,
    /// The configured gateway.
    pub gateway: Arc<dyn PaymentGateway>,
}

/// Environment variable naming a step after which the process aborts, for crash tests.
pub const FAILPOINT_VARIABLE: &str = "TICKETING_FAILPOINT";

fn failpoint(name: &str) {
    if std::env::var(FAILPOINT_VARIABLE).is_ok_and(|v| v == name) {
        tracing::error!(message = "Failpoint reached; aborting.", failpoint = name);
        std::process::abort();
    }
}

impl Settlement {
    /// Charges the attempt in flight of `payment_id` (for `order_id`) and records what
    /// happened.
    pub async fn settle(&self, payment_id: &str, order_id: &str, attempt: &Attempt) -> Result<Settled, SettleError> {
        let charged = self
            .gateway
            .charge(attempt.amount_cents, &attempt.currency, &attempt.token, &attempt.idempotency_key)
            .await;
        let n = attempt.attempt;
        match charged {
            Ok(charge) => {
                failpoint("after-charge");
                let record = PaymentCommand::RecordCharge { attempt: n, charge_id: charge.id.clone() };
                self.payments
                    .execute(request(payment_id, format!("charge:{payment_id}:{n}"), record))
                    .await
                    .map_err(unavailable)?;
                platform::metrics::METRICS.payment("succeeded");
                self.complete(payment_id, order_id, &charge.id).await
            }
            Err(ChargeError::Declined(reason) | ChargeError::Invalid(reason)) => {
                self.end_attempt(payment_id, n, &reason).await.map_err(unavailable)?;
                let decline = OrderCommand::DeclinePayment { payment_id: payment_id.to_string(), reason: reason.clone() };
                self.orders
                    .execute(request(order_id, format!("decline:{payment_id}:{n}"), decline))
                    .await
                    .map_err(unavailable)?;
                platform::metrics::METRICS.payment("declined");
                Ok(Settled::Declined(reason))
            }
            Err(ChargeError::Unavailable(reason)) => {
                platform::metrics::METRICS.payment("unavailable");
                Err(SettleError::Unavailable(reason))
            }
            Err(error @ ChargeError::IdempotencyConflict(_)) => Err(SettleError::Unexpected(error.to_string())),
        }
    }

    /// Ends attempt `n` of `payment_id` without a charge (declined, or never sent because the
    /// order could not await it).
    pub async fn end_attempt(&self, payment_id: &str, n: i32, reason: &str) -> Result<(), CommandError<PaymentError>> {
        let record = PaymentCommand::RecordDecline { attempt: n, reason: reason.to_string() };
        self.payments.execute(request(payment_id, format!("decline:{payment_id}:{n}"), record)).await.map(|_| ())
    }

    /// Completes the order of a charged payment, or refunds the charge when the order can no
    /// longer take it (cancelled or lapsed meanwhile).
    pub async fn complete(&self, payment_id: &str, order_id: &str, charge_id: &str) -> Result<Settled, SettleError> {
        let complete = OrderCommand::CompleteOrder { payment_id: payment_id.to_string() };
        match self.orders.execute(request(order_id, complete_command_id(order_id), complete)).await {
            Ok(completed) => {
                // The saga sells it too (same command id) should this fail.
                let sell = TicketCommand::SellTicket { order_id: order_id.to_string() };
                let sold: Option<Box<Outcome<Ticket>>> = match self
                    .tickets
                    .execute(request(&completed.state.ticket.id, sell_command_id(order_id), sell))
                    .await
                {
                    Ok(sold) => Some(Box::new(sold)),
                    Err(error) => {
                        tracing::warn!(message = "Failed to sell the ticket; the process manager will.", %error);
                        None
                    }
                };
                Ok(Settled::Paid { completed: Box::new(completed), sold })
            }
            Err(CommandError::Rejected(error)) => self.refund(payment_id, order_id, charge_id, &error.to_string()).await,
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Gives a charge back through the gateway and records it.
    pub async fn refund(&self, payment_id: &str, order_id: &str, charge_id: &str, reason: &str) -> Result<Settled, SettleError> {
        tracing::warn!(message = "Refunding a charge its order cannot take.", %payment_id, %order_id, %reason);
        let refund = self.gateway.refund(charge_id, &format!("refund:{payment_id}")).await.map_err(|e| match e {
            ChargeError::Unavailable(reason) => SettleError::Unavailable(reason),
            other => SettleError::Unexpected(other.to_string()),
        })?;
        let record = PaymentCommand::RecordRefund { refund_id: refund.id, reason: reason.to_string() };
        self.payments
            .execute(request(payment_id, format!("refund:{payment_id}"), record))
            .await
            .map_err(unavailable)?;
        platform::metrics::METRICS.payment("refunded");
        Ok(Settled::Refunded(reason.to_string()))
    }
}

/// Finishes, every second until `shutdown`, the payments nothing has finished for `after`:
/// an attempt left in flight (charged again with its own key, so nothing is charged twice) and
/// a charge whose order is not complete (completed, or refunded when it can no longer be).
pub async fn run_reconciler(settlement: Arc<Settlement>, after: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut first_seen: HashMap<(String, i32, bool), Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
            _ = ticker.tick() => {}
        }
        if !settlement.payments.pipeline().is_ready() || !settlement.orders.pipeline().is_ready() {
            continue;
        }
        let orders = settlement.orders.pipeline();
        let unfinished = settlement.payments.pipeline().select(|payment| {
            payment.in_flight.is_some()
                || (payment.is_charged() && orders.state(&payment.order_id).0.status != OrderStatus::Complete)
        });
        let mut still: HashMap<(String, i32, bool), Instant> = HashMap::new();
        for (payment_id, payment) in unfinished {
            let key = (payment_id.clone(), payment.attempts, payment.in_flight.is_some());
            let since = first_seen.get(&key).copied().unwrap_or_else(Instant::now);
            still.insert(key, since);
            if since.elapsed() < after {
                continue;
            }
            let result = match (&payment.in_flight, &payment.charge_id) {
                (Some(attempt), _) => settlement.settle(&payment_id, &payment.order_id, attempt).await,
                (None, Some(charge_id)) => settlement.complete(&payment_id, &payment.order_id, charge_id).await,
                (None, None) => continue,
            };
            match result {
                Ok(settled) => tracing::info!(message = "Reconciled a payment.", %payment_id, outcome = ?settled_name(&settled)),
                Err(error) => tracing::warn!(message = "Failed to reconcile a payment; retrying.", %payment_id, %error),
            }
        }
        first_seen = still;
    }
}

fn settled_name(settled: &Settled) -> &'static str {
    match settled {
        Settled::Paid { .. } => "paid",
        Settled::Declined(_) => "declined",
        Settled::Refunded(_) => "refunded",
    }
}
