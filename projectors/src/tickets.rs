//! The tickets read model: one row per ticket, and the list of tickets for sale.

use std::sync::Arc;

use async_trait::async_trait;
use platform::arbiter::{Verdict, judge};
use platform::codec::{CodecError, EventCodec};
use platform::log::LogRecord;
use platform::projection::{Applied, Projection, ProjectionError};
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
}

impl TicketRow {
    /// The ticket as the reference app shows it (its `version` starts at 0).
    pub fn to_api_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "title": self.title,
            "price": self.price_cents as f64 / 100.0,
            "userId": self.user_id,
            "version": self.version - 1,
        })
    }
}

/// Reads one ticket row.
pub async fn get_ticket(store: &dyn ReadStore, namespace: &str, id: &str) -> Result<Option<TicketRow>, StoreError> {
    let key = CellKey { namespace, table: TICKETS_TABLE, partition: id, clustering: "" };
    match store.get(key).await? {
        Some(cell) => serde_json::from_slice(&cell.value)
            .map(Some)
            .map_err(|e| StoreError::Engine(format!("corrupt ticket row {id}: {e}"))),
        None => Ok(None),
    }
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
        let bytes = record.payload.as_deref().ok_or_else(|| ProjectionError::Poison("no value".into()))?;
        let envelope = self.codec.decode(bytes).await.map_err(|e| match e {
            CodecError::RegistryUnavailable(reason) => ProjectionError::Transient(reason),
            other => ProjectionError::Poison(other.to_string()),
        })?;
        let meta = &envelope.metadata;
        let current = get_ticket(store, namespace, &meta.aggregate_id).await?;
        let last = current.as_ref().map_or(0, |row| row.version);
        if judge(last, meta.aggregate_version) != Verdict::Valid {
            return Ok(Applied::Ignored);
        }
        let row = match (&envelope.event, current) {
            (TicketEvent::Created(e), _) => TicketRow {
                id: meta.aggregate_id.clone(),
                title: e.title.clone(),
                price_cents: e.price_cents,
                user_id: e.user_id.clone(),
                version: meta.aggregate_version,
                list_key: format!("{:016}:{}", meta.occurred_at.max(0), meta.aggregate_id),
            },
            (TicketEvent::Updated(e), Some(row)) => TicketRow {
                title: e.title.clone(),
                price_cents: e.price_cents,
                version: meta.aggregate_version,
                ..row
            },
            // A valid update always follows a create; judge() already ruled this out.
            (TicketEvent::Updated(_), None) => return Ok(Applied::Ignored),
        };
        let value = serde_json::to_vec(&row).map_err(|e| ProjectionError::Poison(e.to_string()))?;
        // The aggregate version is the write timestamp: a stale or repeated write loses.
        let ts = meta.aggregate_version;
        let for_sale = CellKey { namespace, table: FOR_SALE_TABLE, partition: FOR_SALE_PARTITION, clustering: &row.list_key };
        store.put(for_sale, &value, ts).await?;
        let by_id = CellKey { namespace, table: TICKETS_TABLE, partition: &row.id, clustering: "" };
        store.put(by_id, &value, ts).await?;
        Ok(Applied::Changed)
    }
}
