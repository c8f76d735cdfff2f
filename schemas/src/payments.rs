//! Events of the `payments` topic.

use apache_avro::types::Value;
use platform::codec::CodecError;

use crate::events::{AvroEvent, EventSchema, PersonalField, RecordFields};

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

/// An attempt to charge an order, recorded before the gateway is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentStarted {
    /// The order being paid.
    pub order_id: String,
    /// 1 for the first attempt, then +1 for each after a decline.
    pub attempt: i32,
    /// Amount to charge, in cents.
    pub amount_cents: i64,
    /// ISO currency code (`usd`).
    pub currency: String,
    /// The gateway's idempotency key of this attempt.
    pub idempotency_key: String,
    /// The single-use card token, so an interrupted attempt is sent again exactly.
    pub token: String,
}

/// The gateway refused an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentDeclined {
    /// The order.
    pub order_id: String,
    /// The refused attempt.
    pub attempt: i32,
    /// The gateway's reason.
    pub reason: String,
}

/// A charge was given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRefunded {
    /// The order.
    pub order_id: String,
    /// The refunded charge.
    pub charge_id: String,
    /// The gateway's refund id.
    pub refund_id: String,
    /// Why.
    pub reason: String,
}

/// Every event of the `payments` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    /// See [`PaymentCreated`]: the charge succeeded.
    Created(PaymentCreated),
    /// See [`PaymentStarted`].
    Started(PaymentStarted),
    /// See [`PaymentDeclined`].
    Declined(PaymentDeclined),
    /// See [`PaymentRefunded`].
    Refunded(PaymentRefunded),
}

static SCHEMAS: [EventSchema; 4] = [
    EventSchema {
        full_name: "ticketing.payments.PaymentCreated",
        avsc: include_str!("../avro/payments/PaymentCreated.avsc"),
    },
    EventSchema {
        full_name: "ticketing.payments.PaymentStarted",
        avsc: include_str!("../avro/payments/PaymentStarted.avsc"),
    },
    EventSchema {
        full_name: "ticketing.payments.PaymentDeclined",
        avsc: include_str!("../avro/payments/PaymentDeclined.avsc"),
    },
    EventSchema {
        full_name: "ticketing.payments.PaymentRefunded",
        avsc: include_str!("../avro/payments/PaymentRefunded.avsc"),
    },
];

impl AvroEvent for PaymentEvent {
    const TOPIC: &'static str = "payments";

    fn schemas() -> &'static [EventSchema] {
        &SCHEMAS
    }

    fn personal_fields() -> &'static [PersonalField] {
        // A card token is a card holder's payment credential.
        &[PersonalField { record: "ticketing.payments.PaymentStarted", field: "token" }]
    }

    fn schema(&self) -> &'static EventSchema {
        match self {
            PaymentEvent::Created(_) => &SCHEMAS[0],
            PaymentEvent::Started(_) => &SCHEMAS[1],
            PaymentEvent::Declined(_) => &SCHEMAS[2],
            PaymentEvent::Refunded(_) => &SCHEMAS[3],
        }
    }

    fn payload_fields(&self) -> Vec<(&'static str, Value)> {
        match self {
            PaymentEvent::Created(e) => vec![
                ("order_id", Value::String(e.order_id.clone())),
                ("charge_id", Value::String(e.charge_id.clone())),
                ("amount_cents", Value::Long(e.amount_cents)),
                ("currency", Value::String(e.currency.clone())),
            ],
            PaymentEvent::Started(e) => vec![
                ("order_id", Value::String(e.order_id.clone())),
                ("attempt", Value::Int(e.attempt)),
                ("amount_cents", Value::Long(e.amount_cents)),
                ("currency", Value::String(e.currency.clone())),
                ("idempotency_key", Value::String(e.idempotency_key.clone())),
                ("token", Value::String(e.token.clone())),
            ],
            PaymentEvent::Declined(e) => vec![
                ("order_id", Value::String(e.order_id.clone())),
                ("attempt", Value::Int(e.attempt)),
                ("reason", Value::String(e.reason.clone())),
            ],
            PaymentEvent::Refunded(e) => vec![
                ("order_id", Value::String(e.order_id.clone())),
                ("charge_id", Value::String(e.charge_id.clone())),
                ("refund_id", Value::String(e.refund_id.clone())),
                ("reason", Value::String(e.reason.clone())),
            ],
        }
    }

    fn from_record(full_name: &str, fields: &RecordFields) -> Result<Self, CodecError> {
        match full_name {
            "ticketing.payments.PaymentCreated" => Ok(PaymentEvent::Created(PaymentCreated {
                order_id: fields.string("order_id")?,
                charge_id: fields.string("charge_id")?,
                amount_cents: fields.long("amount_cents")?,
                currency: fields.string("currency")?,
            })),
            "ticketing.payments.PaymentStarted" => Ok(PaymentEvent::Started(PaymentStarted {
                order_id: fields.string("order_id")?,
                attempt: fields.int("attempt")?,
                amount_cents: fields.long("amount_cents")?,
                currency: fields.string("currency")?,
                idempotency_key: fields.string("idempotency_key")?,
                token: fields.string("token")?,
            })),
            "ticketing.payments.PaymentDeclined" => Ok(PaymentEvent::Declined(PaymentDeclined {
                order_id: fields.string("order_id")?,
                attempt: fields.int("attempt")?,
                reason: fields.string("reason")?,
            })),
            "ticketing.payments.PaymentRefunded" => Ok(PaymentEvent::Refunded(PaymentRefunded {
                order_id: fields.string("order_id")?,
                charge_id: fields.string("charge_id")?,
                refund_id: fields.string("refund_id")?,
                reason: fields.string("reason")?,
            })),
            other => Err(CodecError::Undecodable(format!("unknown event type {other}"))),
        }
    }
}
