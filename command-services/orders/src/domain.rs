//! The Order aggregate: pure `decide` and `evolve`.

use platform::aggregate::Aggregate;
use platform::money::Currency;
use schemas::orders::{OrderAwaitingPayment, OrderCancelled, OrderCompleted, OrderCreated, OrderEvent, OrderPaymentDeclined};
use serde::{Deserialize, Serialize};

/// Where an order stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Ticket reserved, waiting for payment.
    #[default]
    Created,
    /// Cancelled by its user or expired; the ticket is released.
    Cancelled,
    /// A charge is in flight: the order neither expires nor is cancelled until it ends.
    AwaitingPayment,
    /// Paid; the ticket is sold.
    Complete,
}

impl OrderStatus {
    /// The status as the API shows it.
    pub fn as_api_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::AwaitingPayment => "awaiting:payment",
            OrderStatus::Complete => "complete",
        }
    }
}

/// The ticket as it was when ordered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSnapshot {
    /// Ticket id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Price in the minor unit of `currency`.
    pub price_minor: i64,
    /// The price's currency.
    pub currency: Currency,
}

/// What may be asked of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// Record a new order for a ticket already reserved for it.
    CreateOrder {
        /// The buyer.
        user_id: String,
        /// The reserved ticket.
        ticket: TicketSnapshot,
        /// Payment deadline, ms since the epoch.
        expires_at: i64,
    },
    /// Cancel on the user's request.
    CancelOrder {
        /// Who asks.
        user_id: String,
    },
    /// Cancel because the deadline passed (sent by the expiration worker; a no-op before it).
    ExpireOrder,
    /// A charge is about to be taken (refused once the deadline has passed).
    AwaitPayment {
        /// The payment.
        payment_id: String,
    },
    /// The charge in flight was declined: payable again until the deadline.
    DeclinePayment {
        /// The payment.
        payment_id: String,
        /// The gateway's reason.
        reason: String,
    },
    /// Mark the order paid: after its charge (whatever the time: the charge began in time),
    /// or, without one in flight, only before the deadline.
    CompleteOrder {
        /// The payment.
        payment_id: String,
    },
}

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum OrderError {
    /// The order id is taken.
    #[error("Order already exists")]
    AlreadyExists,
    /// No such order.
    #[error("Not Found")]
    NotFound,
    /// Not the order's user.
    #[error("Not authorized")]
    NotOwner,
    /// A paid order stays paid.
    #[error("Cannot cancel a completed order")]
    CannotCancelComplete,
    /// Cancelled or past its deadline (the reference app's wording).
    #[error("Cannot pay for an cancelled order")]
    NotPayable,
    /// Paid already, by another payment.
    #[error("Order has already been paid for")]
    AlreadyPaid,
    /// A charge is in flight.
    #[error("A payment for this order is in progress")]
    PaymentInProgress,
}

/// The state of one order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// False until created.
    pub exists: bool,
    /// The buyer.
    pub user_id: String,
    /// The ticket.
    pub ticket: TicketSnapshot,
    /// Status.
    pub status: OrderStatus,
    /// Payment deadline, ms since the epoch.
    pub expires_at: i64,
    /// The payment, once complete.
    pub payment_id: Option<String>,
    /// The payment whose charge is in flight.
    pub paying: Option<String>,
}

impl Order {
    /// True while the order can still be paid at `now`.
    pub fn is_payable(&self, now: i64) -> bool {
        self.exists && self.status == OrderStatus::Created && now < self.expires_at
    }
}

impl Aggregate for Order {
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn decide(&self, command: &OrderCommand, now: i64) -> Result<Vec<OrderEvent>, OrderError> {
        match command {
            OrderCommand::CreateOrder { user_id, ticket, expires_at } => {
                if self.exists {
                    return Err(OrderError::AlreadyExists);
                }
                Ok(vec![OrderEvent::Created(OrderCreated {
                    user_id: user_id.clone(),
                    ticket_id: ticket.id.clone(),
                    ticket_title: ticket.title.clone(),
                    ticket_price_minor: ticket.price_minor,
                    ticket_currency: ticket.currency.code().to_string(),
                    expires_at: *expires_at,
                })])
            }
            OrderCommand::CancelOrder { user_id } => {
                if !self.exists {
                    return Err(OrderError::NotFound);
                }
                if &self.user_id != user_id {
                    return Err(OrderError::NotOwner);
                }
                match self.status {
                    OrderStatus::Complete => Err(OrderError::CannotCancelComplete),
                    OrderStatus::Cancelled => Ok(vec![]),
                    OrderStatus::AwaitingPayment => Err(OrderError::PaymentInProgress),
                    OrderStatus::Created => Ok(vec![self.cancelled("cancelled")]),
                }
            }
            OrderCommand::ExpireOrder => {
                let lapsed = self.exists && self.status == OrderStatus::Created && now >= self.expires_at;
                Ok(if lapsed { vec![self.cancelled("expired")] } else { vec![] })
            }
            OrderCommand::AwaitPayment { payment_id } => {
                if !self.exists {
                    return Err(OrderError::NotFound);
                }
                match self.status {
                    OrderStatus::AwaitingPayment if self.paying.as_ref() == Some(payment_id) => Ok(vec![]),
                    OrderStatus::Complete => Err(OrderError::AlreadyPaid),
                    _ if !self.is_payable(now) => Err(OrderError::NotPayable),
                    _ => Ok(vec![OrderEvent::AwaitingPayment(OrderAwaitingPayment { payment_id: payment_id.clone() })]),
                }
            }
            OrderCommand::DeclinePayment { payment_id, reason } => {
                if self.status == OrderStatus::AwaitingPayment && self.paying.as_ref() == Some(payment_id) {
                    Ok(vec![OrderEvent::PaymentDeclined(OrderPaymentDeclined {
                        payment_id: payment_id.clone(),
                        reason: reason.clone(),
                    })])
                } else {
                    Ok(vec![])
                }
            }
            OrderCommand::CompleteOrder { payment_id } => {
                if !self.exists {
                    return Err(OrderError::NotFound);
                }
                if self.status == OrderStatus::Complete {
                    return if self.payment_id.as_ref() == Some(payment_id) {
                        Ok(vec![])
                    } else {
                        Err(OrderError::AlreadyPaid)
                    };
                }
                let charged_in_time = self.status == OrderStatus::AwaitingPayment && self.paying.as_ref() == Some(payment_id);
                if !charged_in_time && !self.is_payable(now) {
                    return Err(OrderError::NotPayable);
                }
                Ok(vec![OrderEvent::Completed(OrderCompleted {
                    ticket_id: self.ticket.id.clone(),
                    payment_id: payment_id.clone(),
                })])
            }
        }
    }

    fn evolve(self, event: &OrderEvent) -> Self {
        match event {
            OrderEvent::Created(e) => Order {
                exists: true,
                user_id: e.user_id.clone(),
                ticket: TicketSnapshot {
                    id: e.ticket_id.clone(),
                    title: e.ticket_title.clone(),
                    price_minor: e.ticket_price_minor,
                    currency: Currency::from_log(&e.ticket_currency),
                },
                status: OrderStatus::Created,
                expires_at: e.expires_at,
                payment_id: None,
                paying: None,
            },
            OrderEvent::Cancelled(_) => Order { status: OrderStatus::Cancelled, paying: None, ..self },
            OrderEvent::Completed(e) => {
                Order { status: OrderStatus::Complete, payment_id: Some(e.payment_id.clone()), paying: None, ..self }
            }
            OrderEvent::AwaitingPayment(e) => {
                Order { status: OrderStatus::AwaitingPayment, paying: Some(e.payment_id.clone()), ..self }
            }
            OrderEvent::PaymentDeclined(_) => Order { status: OrderStatus::Created, paying: None, ..self },
        }
    }
}

impl Order {
    fn cancelled(&self, reason: &str) -> OrderEvent {
        OrderEvent::Cancelled(OrderCancelled { ticket_id: self.ticket.id.clone(), reason: reason.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::aggregate::testing::given;

    fn created() -> OrderEvent {
        OrderEvent::Created(OrderCreated {
            user_id: "bob".into(),
            ticket_id: "t1".into(),
            ticket_title: "concert".into(),
            ticket_price_minor: 2000,
            ticket_currency: "USD".into(),
            expires_at: 1000,
        })
    }

    fn cancelled(reason: &str) -> OrderEvent {
        OrderEvent::Cancelled(OrderCancelled { ticket_id: "t1".into(), reason: reason.into() })
    }

    fn completed() -> OrderEvent {
        OrderEvent::Completed(OrderCompleted { ticket_id: "t1".into(), payment_id: "p1".into() })
    }

    #[test]
    fn its_user_cancels_an_order() {
        given::<Order>(vec![created()])
            .when(OrderCommand::CancelOrder { user_id: "bob".into() })
            .then_expect_events(vec![cancelled("cancelled")]);
        given::<Order>(vec![created()])
            .when(OrderCommand::CancelOrder { user_id: "eve".into() })
            .then_expect_error(OrderError::NotOwner);
    }

    #[test]
    fn a_complete_order_cannot_be_cancelled_or_expire() {
        given::<Order>(vec![created(), completed()])
            .when(OrderCommand::CancelOrder { user_id: "bob".into() })
            .then_expect_error(OrderError::CannotCancelComplete);
        given::<Order>(vec![created(), completed()])
            .at(5000).when(OrderCommand::ExpireOrder)
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_order_expires_only_after_its_deadline() {
        given::<Order>(vec![created()]).at(999).when(OrderCommand::ExpireOrder).then_expect_events(vec![]);
        given::<Order>(vec![created()])
            .at(1000).when(OrderCommand::ExpireOrder)
            .then_expect_events(vec![cancelled("expired")]);
    }

    #[test]
    fn cancelled_or_lapsed_orders_cannot_be_paid() {
        given::<Order>(vec![created(), cancelled("expired")])
            .at(10).when(OrderCommand::CompleteOrder { payment_id: "p1".into() })
            .then_expect_error(OrderError::NotPayable);
        given::<Order>(vec![created()])
            .at(1000).when(OrderCommand::CompleteOrder { payment_id: "p1".into() })
            .then_expect_error(OrderError::NotPayable);
        given::<Order>(vec![created()])
            .at(10).when(OrderCommand::CompleteOrder { payment_id: "p1".into() })
            .then_expect_events(vec![completed()]);
    }

    #[test]
    fn paying_twice_with_the_same_payment_changes_nothing() {
        given::<Order>(vec![created(), completed()])
            .at(10).when(OrderCommand::CompleteOrder { payment_id: "p1".into() })
            .then_expect_events(vec![]);
        given::<Order>(vec![created(), completed()])
            .at(10).when(OrderCommand::CompleteOrder { payment_id: "p2".into() })
            .then_expect_error(OrderError::AlreadyPaid);
    }

    fn awaiting() -> OrderEvent {
        OrderEvent::AwaitingPayment(OrderAwaitingPayment { payment_id: "p1".into() })
    }

    #[test]
    fn a_charge_in_flight_holds_the_order_past_its_deadline() {
        given::<Order>(vec![created()])
            .at(10)
            .when(OrderCommand::AwaitPayment { payment_id: "p1".into() })
            .then_expect_events(vec![awaiting()]);
        given::<Order>(vec![created()])
            .at(1000)
            .when(OrderCommand::AwaitPayment { payment_id: "p1".into() })
            .then_expect_error(OrderError::NotPayable);
        // Neither the deadline nor the user ends it meanwhile ...
        given::<Order>(vec![created(), awaiting()]).at(5000).when(OrderCommand::ExpireOrder).then_expect_events(vec![]);
        given::<Order>(vec![created(), awaiting()])
            .when(OrderCommand::CancelOrder { user_id: "bob".into() })
            .then_expect_error(OrderError::PaymentInProgress);
        // ... and its charge completes it even after the deadline.
        given::<Order>(vec![created(), awaiting()])
            .at(5000)
            .when(OrderCommand::CompleteOrder { payment_id: "p1".into() })
            .then_expect_events(vec![completed()]);
    }

    #[test]
    fn a_declined_charge_makes_the_order_payable_again_until_its_deadline() {
        let declined = OrderEvent::PaymentDeclined(OrderPaymentDeclined { payment_id: "p1".into(), reason: "declined".into() });
        given::<Order>(vec![created(), awaiting()])
            .when(OrderCommand::DeclinePayment { payment_id: "p1".into(), reason: "declined".into() })
            .then_expect_events(vec![declined.clone()]);
        given::<Order>(vec![created(), awaiting(), declined.clone()])
            .at(10)
            .when(OrderCommand::AwaitPayment { payment_id: "p1".into() })
            .then_expect_events(vec![awaiting()]);
        given::<Order>(vec![created(), awaiting(), declined])
            .at(1000)
            .when(OrderCommand::ExpireOrder)
            .then_expect_events(vec![cancelled("expired")]);
    }
}
