//! The tickets read model: one row per ticket, and the list of tickets for sale.

use std::sync::Arc;

use async_trait::async_trait;
use platform::arbiter::{Verdict, judge};
use platform::codec::EventCodec;
use platform::log::LogRecord;
use platform::projection::{Applied, Projection, ProjectionError, decode_record, read_row};
use platform::store::{CellKey, ReadStore, StoreError};
use schemas::tickets::TicketEvent;
use serde::{Deserialize, Serialize};

/// Table of ticket rows, partitioned by ticket id.
pub const TICKETS_TABLE: &str = "tickets";
/// Table of tickets for sale: one partition, clustered by creation time then id.
pub const FOR_SALE_TABLE: &str = "tickets_for_sale";
/// The one partition of [`FOR_SALE_TABLE`].
pub const FOR_SALE_PARTITION: &str = "all";

/// A ticket as the read side keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRow {
    /// Ticket id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Price in cents.
    pub price_cents: i64,
    /// Seller.
    pub user_id: String,
    /// Aggregate version (1-based, as in the log).
    pub version: i64,
    /// Clustering key in the list of tickets for sale (creation time, then id).
    pub list_key: String,
    /// The order holding or having bought the ticket.
    #[serde(default)]
    pub order_id: Option<String>,
    /// `available`, `reserved` or `sold`.
    #[serde(default = "available")]
    pub status: String,
}

fn available() -> String {
    "available".into()
}

impl TicketRow {
    /// The ticket as the reference app shows it (its `version` starts at 0).
    pub fn to_api_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "id": self.id,
            "title": self.title,
            "price": self.price_cents as f64 / 100.0,
            "userId": self.user_id,
            "version": self.version - 1,
        });
        if let Some(order_id) = &self.order_id {
            body["orderId"] = order_id.clone().into();
        }
        body
    }
}

/// Reads one ticket row.
pub async fn get_ticket(store: &dyn ReadStore, namespace: &str, id: &str) -> Result<Option<TicketRow>, StoreError> {
    read_row(store, namespace, TICKETS_TABLE, id).await
}

/// Folds the tickets topic.
pub struct TicketProjector {
    codec: Arc<dyn EventCodec<TicketEvent>>,
}

impl TicketProjector {
    /// A projector decoding with `codec`.
    pub fn new(codec: Arc<dyn EventCodec<TicketEvent>>) -> Self {
        Self { codec }
    }
}

#[async_trait]
impl Projection for TicketProjector {
    fn name(&self) -> &'static str {
        "tickets"
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
        let current = get_ticket(store, namespace, &meta.aggregate_id).await?;
        let last = current.as_ref().map_or(0, |row| row.version);
        if judge(last, meta.aggregate_version) != Verdict::Valid {
            return Ok(Applied::Ignored);
        }
        let version = meta.aggregate_version;
        let row = match (&envelope.event, current) {
            (TicketEvent::Created(e), _) => TicketRow {
                id: meta.aggregate_id.clone(),
                title: e.title.clone(),
                price_cents: e.price_cents,
                user_id: e.user_id.clone(),
                version,
                list_key: format!("{:016}:{}", meta.occurred_at.max(0), meta.aggregate_id),
                order_id: None,
                status: available(),
            },
            (TicketEvent::Updated(e), Some(row)) => {
                TicketRow { title: e.title.clone(), price_cents: e.price_cents, version, ..row }
            }
            (TicketEvent::Reserved(e), Some(row)) => {
                TicketRow { order_id: Some(e.order_id.clone()), status: "reserved".into(), version, ..row }
            }
            (TicketEvent::Released(_), Some(row)) => TicketRow { order_id: None, status: available(), version, ..row },
            (TicketEvent::Sold(e), Some(row)) => {
                TicketRow { order_id: Some(e.order_id.clone()), status: "sold".into(), version, ..row }
            }
            // A valid non-creating event always follows a create; judge() already ruled this out.
            (_, None) => return Ok(Applied::Ignored),
        };
        let value = serde_json::to_vec(&row).map_err(|e| ProjectionError::Poison(e.to_string()))?;
        // The aggregate version is the write timestamp: a stale or repeated write loses.
        let for_sale = CellKey { namespace, table: FOR_SALE_TABLE, partition: FOR_SALE_PARTITION, clustering: &row.list_key };
        if row.status == "available" {
            store.put(for_sale, &value, version).await?;
        } else {
            store.delete(for_sale, version).await?;
        }
        let by_id = CellKey { namespace, table: TICKETS_TABLE, partition: &row.id, clustering: "" };
        store.put(by_id, &value, version).await?;
        Ok(Applied::Changed)
    }
}
