//! Connection settings of the Kafka-API log, read from the environment.

use rdkafka::ClientConfig;

/// Where the log lives and how topic names are prefixed.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `host:port[,host:port…]` of the brokers (`KAFKA_BOOTSTRAP_SERVERS`).
    pub bootstrap_servers: String,
    /// Prefix of every topic and consumer group (`TICKETING_NAMESPACE`), so that several
    /// deployments (or test runs) can share one cluster.
    pub namespace: String,
    /// Extra librdkafka properties (`KAFKA_PROPERTY_<NAME>` with `_` for `.`), e.g.
    /// `KAFKA_PROPERTY_SECURITY_PROTOCOL=SASL_SSL` for TLS/SASL clusters.
    pub extra: Vec<(String, String)>,
    /// Partitions of topics this deployment creates (`KAFKA_TOPIC_PARTITIONS`, default 6).
    pub partitions: i32,
    /// Replication factor of topics this deployment creates (`KAFKA_REPLICATION_FACTOR`, default 1).
    pub replication_factor: i32,
    /// Idempotent producers (`KAFKA_ENABLE_IDEMPOTENCE`, default true). The local Tansu broker
    /// runs without: its SQLite engine panics on some idempotent produces (see README).
    /// Correctness does not rest on it: the log arbiter ignores duplicated records, and with it
    /// off a producer keeps one request in flight so retries cannot reorder.
    pub idempotence: bool,
    /// Configs of event topics this deployment creates (`KAFKA_TOPIC_CONFIG`,
    /// `key=value,…`; the chart sets `retention.ms=-1,retention.bytes=-1`: the log is the
    /// source of truth and must never expire).
    pub topic_config: Vec<(String, String)>,
    /// Configs of compacted topics it creates (`KAFKA_SCHEMAS_TOPIC_CONFIG`), besides
    /// `cleanup.policy=compact`.
    pub compacted_topic_config: Vec<(String, String)>,
    /// How long the broker may hold a fetch that found nothing (`KAFKA_FETCH_WAIT_MAX_MS`,
    /// default 20). Tansu 0.6 holds every fetch this long, records or not, so it is the floor
    /// of a command's echo and of projection lag; lower costs broker CPU (see BENCHMARKS.md).
    pub fetch_wait_ms: u32,
}

/// The least `fetch.wait.max.ms` of consumers whose records are seldom urgent (see
/// [`LogConfig::background`]).
pub const BACKGROUND_FETCH_WAIT_MS: u32 = 500;

/// Parses `key=value,key=value`, skipping malformed pairs.
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

impl LogConfig {
    /// A config for the given brokers and namespace with defaults for everything else.
    pub fn new(bootstrap_servers: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            namespace: namespace.into(),
            extra: Vec::new(),
            partitions: 6,
            replication_factor: 1,
            idempotence: true,
            topic_config: Vec::new(),
            compacted_topic_config: Vec::new(),
            fetch_wait_ms: 20,
        }
    }

    /// Reads the config from the environment; `None` when `KAFKA_BOOTSTRAP_SERVERS` is unset.
    pub fn from_env() -> Option<Self> {
        let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok()?;
        Some(Self::new(servers, env_or("TICKETING_NAMESPACE", "ticketing")).with_env_settings())
    }

    /// Applies the optional settings of the environment (`KAFKA_PROPERTY_*`,
    /// `KAFKA_TOPIC_PARTITIONS`, `KAFKA_FETCH_WAIT_MAX_MS`, …) to a config whose brokers are
    /// known otherwise, such as the local broker's.
    pub fn with_env_settings(mut self) -> Self {
        self.extra = std::env::vars()
            .filter_map(|(k, v)| {
                k.strip_prefix("KAFKA_PROPERTY_")
                    .map(|name| (name.to_ascii_lowercase().replace('_', "."), v))
            })
            .collect();
        self.partitions = env_or("KAFKA_TOPIC_PARTITIONS", "6").parse().unwrap_or(6);
        self.replication_factor = env_or("KAFKA_REPLICATION_FACTOR", "1").parse().unwrap_or(1);
        self.idempotence = env_or("KAFKA_ENABLE_IDEMPOTENCE", "true") != "false";
        self.topic_config = parse_pairs(&env_or("KAFKA_TOPIC_CONFIG", ""));
        self.compacted_topic_config = parse_pairs(&env_or("KAFKA_SCHEMAS_TOPIC_CONFIG", ""));
        self.fetch_wait_ms = env_or("KAFKA_FETCH_WAIT_MAX_MS", "20").parse().unwrap_or(20);
        self
    }

    /// This config for a consumer whose records are seldom urgent (ownership claims): its
    /// fetches may wait at least [`BACKGROUND_FETCH_WAIT_MS`]. On Kafka that
    /// costs nothing, a fetch answers as soon as records arrive; Tansu 0.6 holds every fetch
    /// for the whole wait and queries SQLite for each partition of each waiting fetch, so
    /// consumers that poll less leave the broker's CPU to the ones users wait for.
    pub fn background(&self) -> Self {
        let mut config = self.clone();
        config.fetch_wait_ms = config.fetch_wait_ms.max(BACKGROUND_FETCH_WAIT_MS);
        config
    }

    /// The full name of a topic of this deployment: `<namespace>.<name>`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{}", self.namespace, name)
    }

    /// The full name of a consumer group of this deployment.
    pub fn group(&self, name: &str) -> String {
        format!("{}.{}", self.namespace, name)
    }

    /// A producer config as every producer of the system needs it: `acks=all`, idempotence as
    /// configured (without it, one request in flight so retries cannot reorder), and the Java
    /// client's murmur2 partitioner so ownership can compute partitions from keys. Callers add
    /// batching and timeouts.
    pub fn producer_config(&self) -> ClientConfig {
        let mut client = self.client_config();
        client
            .set("acks", "all")
            .set("enable.idempotence", self.idempotence.to_string())
            .set("partitioner", "murmur2_random");
        if !self.idempotence {
            client.set("max.in.flight.requests.per.connection", "1");
        }
        client
    }

    /// A librdkafka config with the brokers and the extra properties set.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        // Fail fast when the broker is unreachable instead of retrying for minutes.
        config.set("socket.timeout.ms", "5000");
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}
