//! The Payment aggregate: one payment per order (its id derives from the order id), taken in
//! attempts. An attempt is recorded before the gateway is asked, with the idempotency key the
//! gateway gets (one per attempt, so a declined card can be retried with another), and ends
//! charged or declined; a charge its order can no longer take is refunded.

use platform::aggregate::Aggregate;
use schemas::payments::{PaymentCreated, PaymentDeclined, PaymentEvent, PaymentRefunded, PaymentStarted};
use serde::{Deserialize, Serialize};

/// Namespace of payment ids: `v5(order id)`, so an order is paid at most once.
pub const PAYMENT_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x81d4_5e2a_3c6b_4f19_a0e7_6b2c_d3f8_1e54);

/// The payment id of an order.
pub fn payment_id_for(order_id: &str) -> String {
    uuid::Uuid::new_v5(&PAYMENT_ID_NAMESPACE, order_id.as_bytes()).to_string()
}

/// What may be asked of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentCommand {
    /// Record a new attempt before charging (a no-op while one is in flight: it goes on).
    StartPayment {
        /// The order to pay.
        order_id: String,
        /// Amount, cents.
        amount_cents: i64,
        /// Currency.
        currency: String,
        /// The card token.
        token: String,
    },
    /// The gateway charged the attempt.
    RecordCharge {
        /// The attempt.
        attempt: i32,
        /// The gateway's charge id.
        charge_id: String,
    },
    /// The gateway refused the attempt.
    RecordDecline {
        /// The attempt.
        attempt: i32,
        /// The gateway's reason.
        reason: String,
    },
    /// The charge was given back.
    RecordRefund {
        /// The gateway's refund id.
        refund_id: String,
        /// Why.
        reason: String,
    },
}

/// Why a payment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PaymentError {
    /// The order is paid already.
    #[error("Order has already been paid for")]
    AlreadyPaid,
    /// An outcome for an attempt that is not the one in flight.
    #[error("No such payment attempt")]
    NoSuchAttempt,
    /// A refund of a payment that charged nothing.
    #[error("Nothing was charged")]
    NotCharged,
}

/// The attempt in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its number.
    pub attempt: i32,
    /// Amount, cents.
    pub amount_cents: i64,
    /// Currency.
    pub currency: String,
    /// The gateway's idempotency key.
    pub idempotency_key: String,
    /// The card token.
    pub token: String,
}

/// The state of one payment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// False until an attempt (or, in older logs, a charge) is recorded.
    pub exists: bool,
    /// The order.
    pub order_id: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// The attempt waiting for its outcome.
    pub in_flight: Option<Attempt>,
    /// The charge, once taken.
    pub charge_id: Option<String>,
    /// Amount charged, cents.
    pub amount_cents: i64,
    /// The refund, once given back.
    pub refund_id: Option<String>,
}

impl Payment {
    /// Charged and not refunded.
    pub fn is_charged(&self) -> bool {
        self.charge_id.is_some() && self.refund_id.is_none()
    }
}

impl Aggregate for Payment {
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;

    fn decide(&self, command: &PaymentCommand, _now: i64) -> Result<Vec<PaymentEvent>, PaymentError> {
        match command {
            PaymentCommand::StartPayment { order_id, amount_cents, currency, token } => {
                if self.charge_id.is_some() {
                    return Err(PaymentError::AlreadyPaid);
                }
                if self.in_flight.is_some() {
                    return Ok(vec![]);
                }
                let attempt = self.attempts + 1;
                Ok(vec![PaymentEvent::Started(PaymentStarted {
                    order_id: order_id.clone(),
                    attempt,
                    amount_cents: *amount_cents,
                    currency: currency.clone(),
                    idempotency_key: format!("{order_id}:attempt-{attempt}"),
                    token: token.clone(),
                })])
            }
            PaymentCommand::RecordCharge { attempt, charge_id } => {
                if self.charge_id.as_ref() == Some(charge_id) {
                    return Ok(vec![]);
                }
                match &self.in_flight {
                    Some(flying) if flying.attempt == *attempt => Ok(vec![PaymentEvent::Created(PaymentCreated {
                        order_id: self.order_id.clone(),
                        charge_id: charge_id.clone(),
                        amount_cents: flying.amount_cents,
                        currency: flying.currency.clone(),
                    })]),
                    _ => Err(PaymentError::NoSuchAttempt),
                }
            }
            PaymentCommand::RecordDecline { attempt, reason } => match &self.in_flight {
                Some(flying) if flying.attempt == *attempt => Ok(vec![PaymentEvent::Declined(PaymentDeclined {
                    order_id: self.order_id.clone(),
                    attempt: *attempt,
                    reason: reason.clone(),
                })]),
                _ => Ok(vec![]),
            },
            PaymentCommand::RecordRefund { refund_id, reason } => match (&self.charge_id, &self.refund_id) {
                (_, Some(_)) => Ok(vec![]),
                (Some(charge_id), None) => Ok(vec![PaymentEvent::Refunded(PaymentRefunded {
                    order_id: self.order_id.clone(),
                    charge_id: charge_id.clone(),
                    refund_id: refund_id.clone(),
                    reason: reason.clone(),
                })]),
                (None, None) => Err(PaymentError::NotCharged),
            },
        }
    }

    fn evolve(self, event: &PaymentEvent) -> Self {
        match event {
            PaymentEvent::Started(e) => Payment {
                exists: true,
                order_id: e.order_id.clone(),
                attempts: e.attempt,
                in_flight: Some(Attempt {
                    attempt: e.attempt,
                    amount_cents: e.amount_cents,
                    currency: e.currency.clone(),
                    idempotency_key: e.idempotency_key.clone(),
                    token: e.token.clone(),
                }),
                ..self
            },
            PaymentEvent::Created(e) => Payment {
                exists: true,
                order_id: e.order_id.clone(),
                in_flight: None,
                charge_id: Some(e.charge_id.clone()),
                amount_cents: e.amount_cents,
                ..self
            },
            PaymentEvent::Declined(_) => Payment { in_flight: None, ..self },
            PaymentEvent::Refunded(e) => Payment { refund_id: Some(e.refund_id.clone()), ..self },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::aggregate::testing::given;

    fn start(token: &str) -> PaymentCommand {
        PaymentCommand::StartPayment { order_id: "o1".into(), amount_cents: 2000, currency: "usd".into(), token: token.into() }
    }

    fn started(attempt: i32, token: &str) -> PaymentEvent {
        PaymentEvent::Started(PaymentStarted {
            order_id: "o1".into(),
            attempt,
            amount_cents: 2000,
            currency: "usd".into(),
            idempotency_key: format!("o1:attempt-{attempt}"),
            token: token.into(),
        })
    }

    fn declined(attempt: i32) -> PaymentEvent {
        PaymentEvent::Declined(PaymentDeclined { order_id: "o1".into(), attempt, reason: "declined".into() })
    }

    #[test]
    fn each_attempt_has_its_own_idempotency_key() {
        given::<Payment>(vec![]).when(start("tok_chargeDeclined")).then_expect_events(vec![started(1, "tok_chargeDeclined")]);
        // After a decline, another card is a new attempt with a new key.
        given::<Payment>(vec![started(1, "tok_chargeDeclined"), declined(1)])
            .when(start("tok_visa"))
            .then_expect_events(vec![started(2, "tok_visa")]);
    }

    #[test]
    fn an_attempt_in_flight_goes_on_and_a_charged_payment_takes_no_other() {
        given::<Payment>(vec![started(1, "tok_visa")]).when(start("tok_other")).then_expect_events(vec![]);
        let charged = PaymentEvent::Created(PaymentCreated {
            order_id: "o1".into(),
            charge_id: "ch_1".into(),
            amount_cents: 2000,
            currency: "usd".into(),
        });
        given::<Payment>(vec![started(1, "tok_visa"), charged.clone()])
            .when(start("tok_visa"))
            .then_expect_error(PaymentError::AlreadyPaid);
        given::<Payment>(vec![started(1, "tok_visa")])
            .when(PaymentCommand::RecordCharge { attempt: 1, charge_id: "ch_1".into() })
            .then_expect_events(vec![charged.clone()]);
        given::<Payment>(vec![started(1, "tok_visa"), charged.clone()])
            .when(PaymentCommand::RecordCharge { attempt: 1, charge_id: "ch_1".into() })
            .then_expect_events(vec![]);
        given::<Payment>(vec![started(1, "tok_visa")])
            .when(PaymentCommand::RecordCharge { attempt: 2, charge_id: "ch_1".into() })
            .then_expect_error(PaymentError::NoSuchAttempt);
    }

    #[test]
    fn only_a_charge_is_refunded_and_only_once() {
        let charged = PaymentEvent::Created(PaymentCreated {
            order_id: "o1".into(),
            charge_id: "ch_1".into(),
            amount_cents: 2000,
            currency: "usd".into(),
        });
        let refunded = PaymentEvent::Refunded(PaymentRefunded {
            order_id: "o1".into(),
            charge_id: "ch_1".into(),
            refund_id: "re_1".into(),
            reason: "order cancelled".into(),
        });
        let refund = PaymentCommand::RecordRefund { refund_id: "re_1".into(), reason: "order cancelled".into() };
        given::<Payment>(vec![started(1, "tok_visa"), charged.clone()]).when(refund.clone()).then_expect_events(vec![refunded.clone()]);
        given::<Payment>(vec![started(1, "tok_visa"), charged, refunded]).when(refund.clone()).then_expect_events(vec![]);
        given::<Payment>(vec![started(1, "tok_visa")]).when(refund).then_expect_error(PaymentError::NotCharged);
    }
}
