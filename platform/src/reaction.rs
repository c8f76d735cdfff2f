//! Reactions obey the arbiter: a consumer-group member that acts on events (a process manager)
//! judges every record with the arbiter rule, like the aggregate and the projectors do, so a
//! duplicate or a stale writer's event never sets anything off.
//!
//! The rule needs the head of every aggregate, which depends on the partition's whole history,
//! while a group member starts reading at its committed offset and may be handed a partition
//! other members read meanwhile. [`JudgedPartitions`] therefore follows each partition it sees:
//! the first time, after a rebalance, or when the member reads a record again, it reads the
//! records it missed straight from the log before judging.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::aggregate::EventMetadata;
use crate::arbiter::{Verdict, VersionArbiter};
use crate::codec::{EventCodec, waiting_for_registry};
use crate::log::{LogConfig, LogError, LogRecord, TopicReader};

/// What one member knows of a partition it follows.
#[derive(Default)]
struct Followed {
    arbiter: VersionArbiter,
    /// The offset after the last record judged.
    next_offset: i64,
    /// The member's assignment epoch when it judged that record.
    epoch: u64,
}

/// The arbiter's state of the partitions of one topic that a group member reads.
pub struct JudgedPartitions<E> {
    config: LogConfig,
    codec: Arc<dyn EventCodec<E>>,
    partitions: HashMap<i32, Followed>,
}

impl<E: Clone + Send + Sync + 'static> JudgedPartitions<E> {
    /// Follows the partitions of the codec's topic.
    pub fn new(config: &LogConfig, codec: Arc<dyn EventCodec<E>>) -> Self {
        Self { config: config.clone(), codec, partitions: HashMap::new() }
    }

    /// Judges the event of `record`, which the member read in assignment `epoch`
    /// ([`crate::log::GroupConsumer::assignment_epoch`]).
    pub async fn judge(&mut self, record: &LogRecord, metadata: &EventMetadata, epoch: u64) -> Result<Verdict, LogError> {
        let partition = record.position.partition;
        let offset = record.position.offset;
        let mut followed = self.partitions.remove(&partition).unwrap_or_default();
        // Within one epoch the member reads every committed record of its partitions in order;
        // what lies between two of them is transaction markers and aborted records.
        let missed_from = if offset < followed.next_offset || followed.next_offset == 0 {
            followed = Followed::default();
            Some(0)
        } else if followed.epoch != epoch {
            Some(followed.next_offset)
        } else {
            None
        };
        if let Some(from) = missed_from
            && from < offset
        {
            self.catch_up(&mut followed.arbiter, partition, from, offset).await?;
        }
        let verdict = followed.arbiter.admit(metadata);
        followed.next_offset = offset + 1;
        followed.epoch = epoch;
        self.partitions.insert(partition, followed);
        Ok(verdict)
    }

    /// Admits the events of `partition` in `[from, until)`.
    async fn catch_up(&self, arbiter: &mut VersionArbiter, partition: i32, from: i64, until: i64) -> Result<(), LogError> {
        let topic = self.codec.topic();
        tracing::debug!(message = "Catching up a partition's arbiter.", topic, partition, from, until);
        let reader = TopicReader::partition_from(&self.config, topic, partition, from)?;
        let mut remaining = reader.remaining_before(&BTreeMap::from([(partition, until)]));
        while let Some(record) = reader.next_within(&mut remaining).await? {
            let Some(bytes) = record.payload.as_deref() else { continue };
            // Poison is ignored by every reader (and parked when it is first read).
            if let Ok(envelope) = waiting_for_registry(|| self.codec.decode(bytes)).await {
                arbiter.admit(&envelope.metadata);
            }
        }
        Ok(())
    }
}
