//! Events of the `orders` topic.

use apache_avro::types::Value;
use platform::codec::CodecError;

use crate::evolution::{Upcaster, rename_field};
use crate::events::{AvroEvent, EventSchema, RecordFields};

/// A user ordered a ticket; it is reserved until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCreated {
    /// The buyer.
    pub user_id: String,
    /// The ordered ticket.
    pub ticket_id: String,
    /// Its title when ordered.
    pub ticket_title: String,
    /// Its price when ordered, in the minor unit of `ticket_currency`.
    pub ticket_price_minor: i64,
    /// ISO 4217 code of that price.
    pub ticket_currency: String,
    /// Payment deadline, in milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// The order was cancelled by its user (`cancelled`) or its deadline passed (`expired`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCancelled {
    /// The ticket to release.
    pub ticket_id: String,
    /// `cancelled` or `expired`.
    pub reason: String,
}

/// The order was paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCompleted {
    /// The sold ticket.
    pub ticket_id: String,
    /// The payment.
    pub payment_id: String,
}

/// A charge for the order is in flight: it neither expires nor is cancelled meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderAwaitingPayment {
    /// The payment being taken.
    pub payment_id: String,
}

/// The charge in flight was declined: the order can be paid again until its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPaymentDeclined {
    /// The payment whose attempt was declined.
    pub payment_id: String,
    /// The gateway's reason.
    pub reason: String,
}

/// Every event of the `orders` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    /// See [`OrderCreated`].
    Created(OrderCreated),
    /// See [`OrderCancelled`].
    Cancelled(OrderCancelled),
    /// See [`OrderCompleted`].
    Completed(OrderCompleted),
    /// See [`OrderAwaitingPayment`].
    AwaitingPayment(OrderAwaitingPayment),
    /// See [`OrderPaymentDeclined`].
    PaymentDeclined(OrderPaymentDeclined),
}

static SCHEMAS: [EventSchema; 5] = [
    EventSchema { full_name: "ticketing.orders.OrderCreated", avsc: include_str!("../avro/orders/OrderCreated.avsc") },
    EventSchema {
        full_name: "ticketing.orders.OrderCancelled",
        avsc: include_str!("../avro/orders/OrderCancelled.avsc"),
    },
    EventSchema {
        full_name: "ticketing.orders.OrderCompleted",
        avsc: include_str!("../avro/orders/OrderCompleted.avsc"),
    },
    EventSchema {
        full_name: "ticketing.orders.OrderAwaitingPayment",
        avsc: include_str!("../avro/orders/OrderAwaitingPayment.avsc"),
    },
    EventSchema {
        full_name: "ticketing.orders.OrderPaymentDeclined",
        avsc: include_str!("../avro/orders/OrderPaymentDeclined.avsc"),
    },
];

/// v3 named the price's unit (`ticket_price_cents` became `ticket_price_minor`, beside
/// `ticket_currency`).
static UPCASTERS: [Upcaster; 1] = [Upcaster {
    record: "ticketing.orders.OrderCreated",
    change: "v3 renamed ticket_price_cents (cents of USD) to ticket_price_minor (minor unit of ticket_currency)",
    upcast: ticket_price_cents_to_minor,
}];

#[allow(clippy::ptr_arg, reason = "the upcaster signature: other upcasters add or drop fields")]
fn ticket_price_cents_to_minor(fields: &mut Vec<(String, Value)>) {
    rename_field(fields, "ticket_price_cents", "ticket_price_minor");
}

impl AvroEvent for OrderEvent {
    const TOPIC: &'static str = "orders";

    fn upcasters() -> &'static [Upcaster] {
        &UPCASTERS
    }

    fn schemas() -> &'static [EventSchema] {
        &SCHEMAS
    }

    fn schema(&self) -> &'static EventSchema {
        match self {
            OrderEvent::Created(_) => &SCHEMAS[0],
            OrderEvent::Cancelled(_) => &SCHEMAS[1],
            OrderEvent::Completed(_) => &SCHEMAS[2],
            OrderEvent::AwaitingPayment(_) => &SCHEMAS[3],
            OrderEvent::PaymentDeclined(_) => &SCHEMAS[4],
        }
    }

    fn payload_fields(&self) -> Vec<(&'static str, Value)> {
        match self {
            OrderEvent::Created(e) => vec![
                ("user_id", Value::String(e.user_id.clone())),
                ("ticket_id", Value::String(e.ticket_id.clone())),
                ("ticket_title", Value::String(e.ticket_title.clone())),
                ("ticket_price_minor", Value::Long(e.ticket_price_minor)),
                ("ticket_currency", Value::String(e.ticket_currency.clone())),
                ("expires_at", Value::TimestampMillis(e.expires_at)),
            ],
            OrderEvent::Cancelled(e) => vec![
                ("ticket_id", Value::String(e.ticket_id.clone())),
                ("reason", Value::String(e.reason.clone())),
            ],
            OrderEvent::Completed(e) => vec![
                ("ticket_id", Value::String(e.ticket_id.clone())),
                ("payment_id", Value::String(e.payment_id.clone())),
            ],
            OrderEvent::AwaitingPayment(e) => vec![("payment_id", Value::String(e.payment_id.clone()))],
            OrderEvent::PaymentDeclined(e) => vec![
                ("payment_id", Value::String(e.payment_id.clone())),
                ("reason", Value::String(e.reason.clone())),
            ],
        }
    }

    fn from_record(full_name: &str, fields: &RecordFields) -> Result<Self, CodecError> {
        match full_name {
            "ticketing.orders.OrderCreated" => Ok(OrderEvent::Created(OrderCreated {
                user_id: fields.string("user_id")?,
                ticket_id: fields.string("ticket_id")?,
                ticket_title: fields.string("ticket_title")?,
                ticket_price_minor: fields.long("ticket_price_minor")?,
                ticket_currency: fields.string("ticket_currency")?,
                expires_at: fields.long("expires_at")?,
            })),
            "ticketing.orders.OrderCancelled" => Ok(OrderEvent::Cancelled(OrderCancelled {
                ticket_id: fields.string("ticket_id")?,
                reason: fields.string("reason")?,
            })),
            "ticketing.orders.OrderCompleted" => Ok(OrderEvent::Completed(OrderCompleted {
                ticket_id: fields.string("ticket_id")?,
                payment_id: fields.string("payment_id")?,
            })),
            "ticketing.orders.OrderAwaitingPayment" => {
                Ok(OrderEvent::AwaitingPayment(OrderAwaitingPayment { payment_id: fields.string("payment_id")? }))
            }
            "ticketing.orders.OrderPaymentDeclined" => Ok(OrderEvent::PaymentDeclined(OrderPaymentDeclined {
                payment_id: fields.string("payment_id")?,
                reason: fields.string("reason")?,
            })),
            other => Err(CodecError::Undecodable(format!("unknown event type {other}"))),
        }
    }
}
