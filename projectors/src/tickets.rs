//! The tickets read model: one row per ticket, and the list of tickets for sale.

use std::sync::Arc;

use async_trait::async_trait;
use platform::arbiter::{Head, Verdict};
use platform::codec::EventCodec;
use platform::log::LogRecord;
use platform::money::Currency;
use platform::projection::{Applied, Projection, ProjectionError, decode_record, read_row};
use platform::store::{CellKey, ReadStore, StoreError};
use schemas::tickets::TicketEvent;
use serde::{Deserialize, Serialize};

/// Table of ticket rows, partitioned by ticket id.
pub const TICKETS_TABLE: &str = "tickets";
/// Table of tickets for sale, clustered by creation time then id. A partition holds the
/// tickets listed in one week (UTC, counted from the epoch) whose id falls in one of
/// [`FOR_SALE_SHARDS`] shards, so no partition grows without bound ([`for_sale_partition`]).
pub const FOR_SALE_TABLE: &str = "tickets_for_sale";
/// How many partitions share one week's listings.
pub const FOR_SALE_SHARDS: u32 = 4;
/// Table of the weeks that had listings: one small partition, one cell per week.
pub const FOR_SALE_WEEKS_TABLE: &str = "tickets_for_sale_weeks";
/// The one partition of [`FOR_SALE_WEEKS_TABLE`] (about 52 cells a year).
pub const FOR_SALE_WEEKS_PARTITION: &str = "weeks";
const WEEK_MS: i64 = 7 * 86_400_000;

/// The week a ticket was listed in (its list key starts with its creation time).
pub fn listing_week(list_key: &str) -> i64 {
    list_key.get(..16).and_then(|ms| ms.parse::<i64>().ok()).unwrap_or(0) / WEEK_MS
}

/// The clustering key of a week in [`FOR_SALE_WEEKS_TABLE`], ordered like the weeks.
pub fn week_key(week: i64) -> String {
    let mut key = String::with_capacity(8);
    push_padded(&mut key, week, 8);
    key
}

/// Appends `n` zero-padded to `width` digits, as `format!("{n:0width$}")` writes it: the
/// projector writes three such keys per event, and the formatting machinery was a twentieth of
/// a replay.
fn push_padded(out: &mut String, n: i64, width: usize) {
    if n < 0 {
        use std::fmt::Write as _;
        let _ = write!(out, "{n:0width$}");
        return;
    }
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// The clustering key of a ticket in the list of tickets for sale: creation time, then id.
fn list_key(occurred_at: i64, id: &str) -> String {
    let mut key = String::with_capacity(17 + id.len());
    push_padded(&mut key, occurred_at.max(0), 16);
    key.push(':');
    key.push_str(id);
    key
}

/// The partition of [`FOR_SALE_TABLE`] holding a ticket listed in `week`.
pub fn for_sale_partition(week: i64, id: &str) -> String {
    let shard = (platform::ownership::murmur2(id.as_bytes()) & 0x7fff_ffff) as u32 % FOR_SALE_SHARDS;
    shard_partition(week, shard)
}

/// The name of one shard's partition of a week.
pub fn shard_partition(week: i64, shard: u32) -> String {
    let mut partition = String::with_capacity(12);
    push_padded(&mut partition, week, 8);
    partition.push(':');
    push_padded(&mut partition, i64::from(shard), 1);
    partition
}

/// A ticket as the read side keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRow {
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
    /// Seller.
    pub user_id: String,
    /// Aggregate version (1-based, as in the log).
    pub version: i64,
    /// The command of the last valid event, for the arbiter's judgement of the next one.
    #[serde(default)]
    pub command_id: String,
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
            "price": self.currency.to_major(self.price_minor),
            "currency": self.currency.code(),
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

fn head_of(row: Option<&TicketRow>) -> Head {
    row.map_or_else(Head::default, |row| Head { version: row.version, command_id: row.command_id.clone() })
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
        if head_of(current.as_ref()).judge(meta) != Verdict::Valid {
            return Ok(Applied::Ignored);
        }
        let version = meta.aggregate_version;
        let mut row = match (&envelope.event, current) {
            (TicketEvent::Created(e), _) => TicketRow {
                id: meta.aggregate_id.clone(),
                title: e.title.clone(),
                price_minor: e.price_minor,
                currency: Currency::from_log(&e.currency),
                user_id: e.user_id.clone(),
                version,
                list_key: list_key(meta.occurred_at, &meta.aggregate_id),
                order_id: None,
                status: available(),
                command_id: String::new(),
            },
            (TicketEvent::Updated(e), Some(row)) => {
                TicketRow {
                    title: e.title.clone(),
                    price_minor: e.price_minor,
                    currency: Currency::from_log(&e.currency),
                    version,
                    ..row
                }
            }
            (TicketEvent::Reserved(e), Some(row)) => {
                TicketRow { order_id: Some(e.order_id.clone()), status: "reserved".into(), version, ..row }
            }
            (TicketEvent::Released(_), Some(row)) => TicketRow { order_id: None, status: available(), version, ..row },
            (TicketEvent::Sold(e), Some(row)) => {
                TicketRow { order_id: Some(e.order_id.clone()), status: "sold".into(), version, ..row }
            }
            // A valid non-creating event always follows a create; the arbiter already ruled this out.
            (_, None) => return Ok(Applied::Ignored),
        };
        row.command_id.clone_from(&meta.command_id);
        let value = serde_json::to_vec(&row).map_err(|e| ProjectionError::Poison(e.to_string()))?;
        // The aggregate version is the write timestamp: a stale or repeated write loses.
        let week = listing_week(&row.list_key);
        let week_cell = week_key(week);
        let listed = async {
            if matches!(envelope.event, TicketEvent::Created(_)) {
                // Written the same way by every listing of the week: idempotent.
                let weeks = CellKey { namespace, table: FOR_SALE_WEEKS_TABLE, partition: FOR_SALE_WEEKS_PARTITION, clustering: &week_cell };
                store.put(weeks, b"", 1).await?;
            }
            Ok::<(), StoreError>(())
        };
        let partition = for_sale_partition(week, &row.id);
        let for_sale = CellKey { namespace, table: FOR_SALE_TABLE, partition: &partition, clustering: &row.list_key };
        let for_sale = async {
            if row.status == "available" {
                store.put(for_sale, &value, version).await
            } else {
                store.delete(for_sale, version).await
            }
        };
        let by_id = CellKey { namespace, table: TICKETS_TABLE, partition: &row.id, clustering: "" };
        // Independent cells, each guarded by its own timestamp: written at once.
        futures::try_join!(listed, for_sale, store.put(by_id, &value, version))?;
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_spread_over_weeks_and_shards_in_order() {
        let key = |ms: i64, id: &str| format!("{ms:016}:{id}");
        assert_eq!(listing_week(&key(0, "a")), 0);
        assert_eq!(listing_week(&key(WEEK_MS - 1, "a")), 0);
        assert_eq!(listing_week(&key(WEEK_MS, "a")), 1);
        // Week keys sort like the weeks they name.
        assert!(week_key(9) < week_key(10));
        let partitions: std::collections::BTreeSet<String> =
            (0..200).map(|i| for_sale_partition(3, &format!("ticket-{i}"))).collect();
        let expected: std::collections::BTreeSet<String> = (0..FOR_SALE_SHARDS).map(|s| shard_partition(3, s)).collect();
        assert_eq!(partitions, expected, "ids land in every shard of their week and nowhere else");
    }

    #[test]
    fn keys_are_padded_as_format_pads_them() {
        for n in [0, 1, 9, 10, 99_999_999, 100_000_000, 1_733_500_000_000, i64::MAX, -1, -42, i64::MIN] {
            for width in [1, 8, 16] {
                let mut padded = String::new();
                push_padded(&mut padded, n, width);
                assert_eq!(padded, format!("{n:0width$}"), "{n} in {width} digits");
            }
        }
        assert_eq!(list_key(1_733_500_000_000, "t-1"), format!("{:016}:t-1", 1_733_500_000_000_i64));
        assert_eq!(list_key(-5, "t-1"), "0000000000000000:t-1", "times before the epoch list first");
        assert_eq!(shard_partition(2865, 3), "00002865:3");
        assert_eq!(week_key(-3), "-0000003");
    }
}
