//! Partition ownership of the command side: instances of one command service form a consumer
//! group on their aggregate topic; the group's assignment says which instance owns which
//! partitions, and each owner publishes its claims in a small compacted topic that every
//! instance tails, so a command can be forwarded to the owner of its aggregate's partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::log::{GroupConsumer, LogConfig, LogError, LogProducer, TopicReader, TopicSpec, ensure_topics};

/// Kafka's murmur2 hash (the Java client's and librdkafka's `murmur2_random` partitioner).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition a key lands in with the `murmur2_random` partitioner.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// One instance's claim on a partition, as published in the owners topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Base URL where the owner takes forwarded commands.
    pub url: String,
    /// Id of the claiming instance.
    pub instance: String,
}

/// Where a command should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This instance owns the partition (or nobody is known to): run it here.
    Local,
    /// Another instance owns it.
    Remote(String),
}

#[derive(Default)]
struct State {
    owned: BTreeSet<i32>,
    directory: BTreeMap<i32, Claim>,
}

/// This instance's view of who owns which partition of one aggregate topic.
pub struct PartitionOwnership {
    instance: String,
    partitions: i32,
    state: Arc<RwLock<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PartitionOwnership {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PartitionOwnership {
    /// Joins the command group of `topic` (full name) and starts tailing the claims;
    /// `url` is where this instance takes forwarded commands.
    pub async fn join(config: &LogConfig, topic: &str, url: String) -> Result<Self, LogError> {
        Self::start(config, topic, Some(url)).await
    }

    /// Follows the claims of `topic`'s owners without owning anything: for services that send
    /// commands to another context (orders reserving tickets, payments completing orders).
    pub async fn observe(config: &LogConfig, topic: &str) -> Result<Self, LogError> {
        Self::start(config, topic, None).await
    }

    async fn start(config: &LogConfig, topic: &str, url: Option<String>) -> Result<Self, LogError> {
        let owners_topic = format!("{topic}.owners");
        ensure_topics(config, &[TopicSpec { name: owners_topic.clone(), partitions: 1, compacted: true, config: Vec::new() }]).await?;
        let reader = TopicReader::from_beginning(config, topic)?;
        let partitions = reader.partitions().len() as i32;
        drop(reader);

        let instance = uuid::Uuid::new_v4().to_string();
        let state = Arc::new(RwLock::new(State::default()));
        let claims = TopicReader::from_beginning(config, &owners_topic)?;
        let mut tasks = vec![tokio::spawn(tail_claims(claims, state.clone()))];
        if let Some(url) = url {
            let group = GroupConsumer::subscribe(config, &format!("{topic}.commands"), &[topic])?;
            let producer = LogProducer::new(config)?;
            let claim = Claim { url, instance: instance.clone() };
            tasks.push(tokio::spawn(track_assignment(group, producer, owners_topic, claim, state.clone())));
        }
        Ok(Self { instance, partitions, state, tasks })
    }

    /// Id of this instance.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The partition of an aggregate id.
    pub fn partition_of(&self, aggregate_id: &str) -> i32 {
        partition_for(aggregate_id.as_bytes(), self.partitions)
    }

    /// Where a command on `aggregate_id` should run.
    pub fn route(&self, aggregate_id: &str) -> Route {
        let partition = self.partition_of(aggregate_id);
        let state = self.state.read().expect("ownership lock");
        if state.owned.contains(&partition) {
            return Route::Local;
        }
        match state.directory.get(&partition) {
            Some(claim) if claim.instance != self.instance => Route::Remote(claim.url.clone()),
            _ => Route::Local,
        }
    }

    /// Partitions the group has assigned to this instance.
    pub fn owned(&self) -> BTreeSet<i32> {
        self.state.read().expect("ownership lock").owned.clone()
    }

    /// Owner URL of every partition with a known claim.
    pub fn directory(&self) -> BTreeMap<i32, String> {
        let state = self.state.read().expect("ownership lock");
        state.directory.iter().map(|(p, c)| (*p, c.url.clone())).collect()
    }

    /// True once every partition has a known owner.
    pub fn is_complete(&self) -> bool {
        self.state.read().expect("ownership lock").directory.len() as i32 >= self.partitions
    }
}

async fn track_assignment(
    group: GroupConsumer,
    producer: LogProducer,
    owners_topic: String,
    claim: Claim,
    state: Arc<RwLock<State>>,
) {
    let value = serde_json::to_vec(&claim).expect("a claim serialises");
    let mut claimed: BTreeSet<i32> = BTreeSet::new();
    loop {
        // Polling keeps the membership alive; records are not used (the partitions are paused).
        if let Err(error) = group.next_within_time(Duration::from_millis(200)).await {
            tracing::warn!(message = "Command group poll failed.", %error);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let assigned: BTreeSet<i32> = group.assigned_partitions().into_iter().map(|(_, p)| p).collect();
        if assigned == claimed {
            continue;
        }
        if let Err(error) = group.pause_assigned() {
            tracing::warn!(message = "Failed to pause the command group's partitions.", %error);
        }
        state.write().expect("ownership lock").owned = assigned.clone();
        let mut published = BTreeSet::new();
        for partition in &assigned {
            let key = partition.to_string();
            match producer.append(&owners_topic, key.as_bytes(), &value, &[]).await {
                Ok(_) => {
                    published.insert(*partition);
                }
                Err(error) => tracing::warn!(message = "Failed to publish a partition claim.", partition, %error),
            }
        }
        tracing::info!(message = "Command partitions assigned.", partitions = ?assigned, url = %claim.url);
        // Unpublished claims are retried on the next round.
        claimed = if published.len() == assigned.len() { assigned } else { BTreeSet::new() };
    }
}

async fn tail_claims(reader: TopicReader, state: Arc<RwLock<State>>) {
    loop {
        match reader.next().await {
            Ok(record) => {
                let partition = record.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()?.parse().ok());
                let claim = record.payload.as_deref().and_then(|v| serde_json::from_slice::<Claim>(v).ok());
                if let (Some(partition), Some(claim)) = (partition, claim) {
                    state.write().expect("ownership lock").directory.insert(partition, claim);
                }
            }
            Err(error) => {
                tracing::warn!(message = "Failed to read partition claims.", %error);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values of Kafka's own `Utils.murmur2` tests.
    #[test]
    fn murmur2_matches_kafka() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58_897_971);
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn partitions_are_in_range() {
        for i in 0..1000 {
            let p = partition_for(format!("key-{i}").as_bytes(), 6);
            assert!((0..6).contains(&p));
        }
    }
}
