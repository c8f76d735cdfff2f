//! The Payment aggregate: one payment per order (its id derives from the order id).

use platform::aggregate::Aggregate;
use schemas::payments::{PaymentCreated, PaymentEvent};
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
    /// Record a successful charge.
    RecordPayment {
        /// The paid order.
        order_id: String,
        /// The gateway's charge id.
        charge_id: String,
        /// Amount, cents.
        amount_cents: i64,
        /// Currency.
        currency: String,
    },
}

/// Why a payment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PaymentError {
    /// A different charge is already recorded.
    #[error("The order has already been paid for")]
    AlreadyPaid,
}

/// The state of one payment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// False until recorded.
    pub exists: bool,
    /// The paid order.
    pub order_id: String,
    /// The charge.
    pub charge_id: String,
}

impl Aggregate for Payment {
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;

    fn decide(&self, command: &PaymentCommand, _now: i64) -> Result<Vec<PaymentEvent>, PaymentError> {
        let PaymentCommand::RecordPayment { order_id, charge_id, amount_cents, currency } = command;
        if self.exists {
            return if &self.charge_id == charge_id { Ok(vec![]) } else { Err(PaymentError::AlreadyPaid) };
        }
        Ok(vec![PaymentEvent::Created(PaymentCreated {
            order_id: order_id.clone(),
            charge_id: charge_id.clone(),
            amount_cents: *amount_cents,
            currency: currency.clone(),
        })])
    }

    fn evolve(self, event: &PaymentEvent) -> Self {
        let PaymentEvent::Created(e) = event;
        Payment { exists: true, order_id: e.order_id.clone(), charge_id: e.charge_id.clone() }
    }
}
