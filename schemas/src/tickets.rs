//! Events of the `tickets` topic.

use apache_avro::types::Value;
use platform::codec::CodecError;

use crate::evolution::{Upcaster, rename_field};
use crate::events::{AvroEvent, EventSchema, RecordFields};

/// A user put a ticket up for sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketCreated {
    /// Title shown to buyers.
    pub title: String,
    /// Price in the minor unit of `currency`.
    pub price_minor: i64,
    /// ISO 4217 code of the price.
    pub currency: String,
    /// The seller.
    pub user_id: String,
}

/// The seller changed a ticket's title or price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketUpdated {
    /// New title.
    pub title: String,
    /// New price in the minor unit of `currency`.
    pub price_minor: i64,
    /// ISO 4217 code of the price.
    pub currency: String,
    /// The seller, unchanged.
    pub user_id: String,
}

/// An order reserved the ticket until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketReserved {
    /// The reserving order.
    pub order_id: String,
    /// End of the reservation, in milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// The reservation of an order ended without a sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketReleased {
    /// The order whose reservation ended.
    pub order_id: String,
}

/// The reserving order was paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketSold {
    /// The paid order.
    pub order_id: String,
}

/// Every event of the `tickets` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketEvent {
    /// See [`TicketCreated`].
    Created(TicketCreated),
    /// See [`TicketUpdated`].
    Updated(TicketUpdated),
    /// See [`TicketReserved`].
    Reserved(TicketReserved),
    /// See [`TicketReleased`].
    Released(TicketReleased),
    /// See [`TicketSold`].
    Sold(TicketSold),
}

static SCHEMAS: [EventSchema; 5] = [
    EventSchema {
        full_name: "ticketing.tickets.TicketCreated",
        avsc: include_str!("../avro/tickets/TicketCreated.avsc"),
    },
    EventSchema {
        full_name: "ticketing.tickets.TicketUpdated",
        avsc: include_str!("../avro/tickets/TicketUpdated.avsc"),
    },
    EventSchema {
        full_name: "ticketing.tickets.TicketReserved",
        avsc: include_str!("../avro/tickets/TicketReserved.avsc"),
    },
    EventSchema {
        full_name: "ticketing.tickets.TicketReleased",
        avsc: include_str!("../avro/tickets/TicketReleased.avsc"),
    },
    EventSchema {
        full_name: "ticketing.tickets.TicketSold",
        avsc: include_str!("../avro/tickets/TicketSold.avsc"),
    },
];

/// v3 named the price's unit (`price_cents` became `price_minor`, beside `currency`).
static UPCASTERS: [Upcaster; 2] = [
    Upcaster { record: "ticketing.tickets.TicketCreated", change: PRICE_RENAME, upcast: price_cents_to_minor },
    Upcaster { record: "ticketing.tickets.TicketUpdated", change: PRICE_RENAME, upcast: price_cents_to_minor },
];

const PRICE_RENAME: &str = "v3 renamed price_cents (cents of USD) to price_minor (minor unit of currency)";

#[allow(clippy::ptr_arg, reason = "the upcaster signature: other upcasters add or drop fields")]
fn price_cents_to_minor(fields: &mut Vec<(String, Value)>) {
    rename_field(fields, "price_cents", "price_minor");
}

impl AvroEvent for TicketEvent {
    const TOPIC: &'static str = "tickets";

    fn upcasters() -> &'static [Upcaster] {
        &UPCASTERS
    }

    fn schemas() -> &'static [EventSchema] {
        &SCHEMAS
    }

    fn schema(&self) -> &'static EventSchema {
        match self {
            TicketEvent::Created(_) => &SCHEMAS[0],
            TicketEvent::Updated(_) => &SCHEMAS[1],
            TicketEvent::Reserved(_) => &SCHEMAS[2],
            TicketEvent::Released(_) => &SCHEMAS[3],
            TicketEvent::Sold(_) => &SCHEMAS[4],
        }
    }

    fn payload_fields(&self) -> Vec<(&'static str, Value)> {
        let (title, price_minor, currency, user_id) = match self {
            TicketEvent::Created(e) => (&e.title, e.price_minor, &e.currency, &e.user_id),
            TicketEvent::Updated(e) => (&e.title, e.price_minor, &e.currency, &e.user_id),
            TicketEvent::Reserved(e) => {
                return vec![
                    ("order_id", Value::String(e.order_id.clone())),
                    ("expires_at", Value::TimestampMillis(e.expires_at)),
                ];
            }
            TicketEvent::Released(e) => return vec![("order_id", Value::String(e.order_id.clone()))],
            TicketEvent::Sold(e) => return vec![("order_id", Value::String(e.order_id.clone()))],
        };
        vec![
            ("title", Value::String(title.clone())),
            ("price_minor", Value::Long(price_minor)),
            ("currency", Value::String(currency.clone())),
            ("user_id", Value::String(user_id.clone())),
        ]
    }

    fn from_record(full_name: &str, fields: &RecordFields) -> Result<Self, CodecError> {
        match full_name {
            "ticketing.tickets.TicketReserved" => {
                return Ok(TicketEvent::Reserved(TicketReserved {
                    order_id: fields.string("order_id")?,
                    expires_at: fields.long("expires_at")?,
                }));
            }
            "ticketing.tickets.TicketReleased" => {
                return Ok(TicketEvent::Released(TicketReleased { order_id: fields.string("order_id")? }));
            }
            "ticketing.tickets.TicketSold" => {
                return Ok(TicketEvent::Sold(TicketSold { order_id: fields.string("order_id")? }));
            }
            _ => {}
        }
        let title = fields.string("title")?;
        let price_minor = fields.long("price_minor")?;
        let currency = fields.string("currency")?;
        let user_id = fields.string("user_id")?;
        match full_name {
            "ticketing.tickets.TicketCreated" => {
                Ok(TicketEvent::Created(TicketCreated { title, price_minor, currency, user_id }))
            }
            "ticketing.tickets.TicketUpdated" => {
                Ok(TicketEvent::Updated(TicketUpdated { title, price_minor, currency, user_id }))
            }
            other => Err(CodecError::Undecodable(format!("unknown event type {other}"))),
        }
    }
}
