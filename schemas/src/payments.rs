//! Events of the `payments` topic.

use apache_avro::types::Value;
use platform::codec::CodecError;

use crate::events::{AvroEvent, EventSchema, RecordFields};

/// A charge for an order succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentCreated {
    /// The paid order.
    pub order_id: String,
    /// The gateway's charge id.
    pub charge_id: String,
    /// Amount charged, in cents.
    pub amount_cents: i64,
    /// ISO currency code (`usd`).
    pub currency: String,
}

/// Every event of the `payments` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    /// See [`PaymentCreated`].
    Created(PaymentCreated),
}

static SCHEMAS: [EventSchema; 1] = [EventSchema {
    full_name: "ticketing.payments.PaymentCreated",
    avsc: include_str!("../avro/payments/PaymentCreated.avsc"),
}];

impl AvroEvent for PaymentEvent {
    const TOPIC: &'static str = "payments";

    fn schemas() -> &'static [EventSchema] {
        &SCHEMAS
    }

    fn schema(&self) -> &'static EventSchema {
        &SCHEMAS[0]
    }

    fn payload_fields(&self) -> Vec<(&'static str, Value)> {
        let PaymentEvent::Created(e) = self;
        vec![
            ("order_id", Value::String(e.order_id.clone())),
            ("charge_id", Value::String(e.charge_id.clone())),
            ("amount_cents", Value::Long(e.amount_cents)),
            ("currency", Value::String(e.currency.clone())),
        ]
    }

    fn from_record(full_name: &str, fields: &RecordFields) -> Result<Self, CodecError> {
        match full_name {
            "ticketing.payments.PaymentCreated" => Ok(PaymentEvent::Created(PaymentCreated {
                order_id: fields.string("order_id")?,
                charge_id: fields.string("charge_id")?,
                amount_cents: fields.long("amount_cents")?,
                currency: fields.string("currency")?,
            })),
            other => Err(CodecError::Undecodable(format!("unknown event type {other}"))),
        }
    }
}
