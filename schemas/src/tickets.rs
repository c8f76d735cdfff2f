//! Events of the `tickets` topic.

use apache_avro::types::Value;
use platform::codec::CodecError;

use crate::events::{AvroEvent, EventSchema, RecordFields};

/// A user put a ticket up for sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketCreated {
    /// Title shown to buyers.
    pub title: String,
    /// Price in cents of USD.
    pub price_cents: i64,
    /// The seller.
    pub user_id: String,
}

/// The seller changed a ticket's title or price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketUpdated {
    /// New title.
    pub title: String,
    /// New price in cents of USD.
    pub price_cents: i64,
    /// The seller, unchanged.
    pub user_id: String,
}

/// Every event of the `tickets` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketEvent {
    /// See [`TicketCreated`].
    Created(TicketCreated),
    /// See [`TicketUpdated`].
    Updated(TicketUpdated),
}

static SCHEMAS: [EventSchema; 2] = [
    EventSchema {
        full_name: "ticketing.tickets.TicketCreated",
        avsc: include_str!("../avro/tickets/TicketCreated.avsc"),
    },
    EventSchema {
        full_name: "ticketing.tickets.TicketUpdated",
        avsc: include_str!("../avro/tickets/TicketUpdated.avsc"),
    },
];

impl AvroEvent for TicketEvent {
    const TOPIC: &'static str = "tickets";

    fn schemas() -> &'static [EventSchema] {
        &SCHEMAS
    }

    fn schema(&self) -> &'static EventSchema {
        match self {
            TicketEvent::Created(_) => &SCHEMAS[0],
            TicketEvent::Updated(_) => &SCHEMAS[1],
        }
    }

    fn payload_fields(&self) -> Vec<(&'static str, Value)> {
        let (title, price_cents, user_id) = match self {
            TicketEvent::Created(e) => (&e.title, e.price_cents, &e.user_id),
            TicketEvent::Updated(e) => (&e.title, e.price_cents, &e.user_id),
        };
        vec![
            ("title", Value::String(title.clone())),
            ("price_cents", Value::Long(price_cents)),
            ("user_id", Value::String(user_id.clone())),
        ]
    }

    fn from_record(full_name: &str, fields: &RecordFields) -> Result<Self, CodecError> {
        let title = fields.string("title")?;
        let price_cents = fields.long("price_cents")?;
        let user_id = fields.string("user_id")?;
        match full_name {
            "ticketing.tickets.TicketCreated" => {
                Ok(TicketEvent::Created(TicketCreated { title, price_cents, user_id }))
            }
            "ticketing.tickets.TicketUpdated" => {
                Ok(TicketEvent::Updated(TicketUpdated { title, price_cents, user_id }))
            }
            other => Err(CodecError::Undecodable(format!("unknown event type {other}"))),
        }
    }
}
