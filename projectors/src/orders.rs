//! The orders read model: one row per order, and each user's orders, with the ticket
//! populated from the events (which carry the ticket as ordered).

use std::sync::Arc;

use async_trait::async_trait;
use platform::arbiter::{Head, Verdict};
use platform::codec::EventCodec;
use platform::log::LogRecord;
use platform::money::Currency;
use platform::projection::{Applied, Projection, ProjectionError, decode_record, read_row};
use platform::store::{CellKey, ReadStore, StoreError};
use schemas::orders::OrderEvent;
use serde::{Deserialize, Serialize};

/// Table of order rows, partitioned by order id.
pub const ORDERS_TABLE: &str = "orders";
/// Table of each user's orders: partitioned by user id, clustered by creation time then id.
pub const ORDERS_BY_USER_TABLE: &str = "orders_by_user";

/// The ticket of an order, as ordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTicket {
    /// Ticket id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Price in the minor unit of `currency` (rows written before currencies call it
    /// `price_cents`).
    #[serde(alias = "price_cents")]
    pub price_minor: i64,
    /// The price's currency (USD for rows written before currencies).
    #[serde(default)]
    pub currency: Currency,
}

/// An order as the read side keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRow {
    /// Order id.
    pub id: String,
    /// Buyer.
    pub user_id: String,
    /// `created`, `cancelled`, `awaiting:payment` or `complete`.
    pub status: String,
    /// Payment deadline, ms since the epoch.
    pub expires_at: i64,
    /// The ticket.
    pub ticket: OrderTicket,
    /// Aggregate version (1-based, as in the log).
    pub version: i64,
    /// The command of the last valid event, for the arbiter's judgement of the next one.
    #[serde(default)]
    pub command_id: String,
    /// Clustering key in the user's list (creation time, then id).
    pub list_key: String,
}

impl OrderRow {
    /// The order as the reference app shows it (its `version` starts at 0).
    pub fn to_api_json(&self) -> serde_json::Value {
        let expires_at = chrono::DateTime::from_timestamp_millis(self.expires_at)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        serde_json::json!({
            "id": self.id,
            "userId": self.user_id,
            "status": self.status,
            "expiresAt": expires_at,
            "ticket": {
                "id": self.ticket.id,
                "title": self.ticket.title,
                "price": self.ticket.currency.to_major(self.ticket.price_minor),
                "currency": self.ticket.currency.code(),
            },
            "version": self.version - 1,
        })
    }
}

/// Reads one order row.
pub async fn get_order(store: &dyn ReadStore, namespace: &str, id: &str) -> Result<Option<OrderRow>, StoreError> {
    read_row(store, namespace, ORDERS_TABLE, id).await
}

/// Folds the orders topic.
pub struct OrderProjector {
    codec: Arc<dyn EventCodec<OrderEvent>>,
}

impl OrderProjector {
    /// A projector decoding with `codec`.
    pub fn new(codec: Arc<dyn EventCodec<OrderEvent>>) -> Self {
        Self { codec }
    }
}

#[async_trait]
impl Projection for OrderProjector {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn topic(&self) -> &str {
        self.codec.topic()
    }

    async fn apply(
        &self,
        store: &dyn ReadStore,
        namespace: &str,
        record: &LogRecord,
    ) -> Result<Applied, ProjectionError> {
        let envelope = decode_record(self.codec.as_ref(), record).await?;
        let meta = &envelope.metadata;
        let current = get_order(store, namespace, &meta.aggregate_id).await?;
        let head = current
            .as_ref()
            .map_or_else(Head::default, |row| Head { version: row.version, command_id: row.command_id.clone() });
        if head.judge(meta) != Verdict::Valid {
            return Ok(Applied::Ignored);
        }
        let version = meta.aggregate_version;
        let mut row = match (&envelope.event, current) {
            (OrderEvent::Created(e), _) => OrderRow {
                id: meta.aggregate_id.clone(),
                user_id: e.user_id.clone(),
                status: "created".into(),
                expires_at: e.expires_at,
                ticket: OrderTicket {
                    id: e.ticket_id.clone(),
                    title: e.ticket_title.clone(),
                    price_minor: e.ticket_price_minor,
                    currency: Currency::from_log(&e.ticket_currency),
                },
                version,
                list_key: format!("{:016}:{}", meta.occurred_at.max(0), meta.aggregate_id),
                command_id: String::new(),
            },
            (OrderEvent::Cancelled(_), Some(row)) => OrderRow { status: "cancelled".into(), version, ..row },
            (OrderEvent::Completed(_), Some(row)) => OrderRow { status: "complete".into(), version, ..row },
            (OrderEvent::AwaitingPayment(_), Some(row)) => OrderRow { status: "awaiting:payment".into(), version, ..row },
            (OrderEvent::PaymentDeclined(_), Some(row)) => OrderRow { status: "created".into(), version, ..row },
            (_, None) => return Ok(Applied::Ignored),
        };
        row.command_id.clone_from(&meta.command_id);
        let value = serde_json::to_vec(&row).map_err(|e| ProjectionError::Poison(e.to_string()))?;
        let by_user = CellKey { namespace, table: ORDERS_BY_USER_TABLE, partition: &row.user_id, clustering: &row.list_key };
        let by_id = CellKey { namespace, table: ORDERS_TABLE, partition: &row.id, clustering: "" };
        // Independent cells, each guarded by its own timestamp: written at once.
        futures::try_join!(store.put(by_user, &value, version), store.put(by_id, &value, version))?;
        Ok(Applied::Changed)
    }
}
