//! Connection settings of the Kafka-API log, read from the environment.

use rdkafka::ClientConfig;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, env_number};

/// Where the log lives and how topic names are prefixed.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `host:port[,host:port…]` of the brokers (`KAFKA_BOOTSTRAP_SERVERS`).
    pub bootstrap_servers: String,
    /// Prefix of every topic and consumer group (`TICKETING_NAMESPACE`), so that several
    /// deployments (or test runs) can share one cluster.
    pub namespace: String,
    /// Extra librdkafka properties (`KAFKA_PROPERTY_<NAME>` with `_` for `.`), e.g.
    /// `KAFKA_PROPERTY_SECURITY_PROTOCOL=SASL_SSL` for TLS/SASL clusters. Kept as secrets
    /// (`sasl.password` is one of them): never printed, only handed to librdkafka.
    pub extra: Vec<(String, SecretString)>,
    /// Partitions of topics this deployment creates (`KAFKA_TOPIC_PARTITIONS`, default 6).
    pub partitions: i32,
    /// Replication factor of topics this deployment creates (`KAFKA_REPLICATION_FACTOR`, default 1).
    pub replication_factor: i32,
    /// Configs of event topics this deployment creates (`KAFKA_TOPIC_CONFIG`,
    /// `key=value,…`; the chart sets `retention.ms=-1,retention.bytes=-1`: the log is the
    /// source of truth and must never expire).
    pub topic_config: Vec<(String, String)>,
    /// Configs of compacted topics it creates (`KAFKA_SCHEMAS_TOPIC_CONFIG`), besides
    /// `cleanup.policy=compact`.
    pub compacted_topic_config: Vec<(String, String)>,
    /// How long the broker may hold a fetch that found nothing (`KAFKA_FETCH_WAIT_MAX_MS`,
    /// default 500, librdkafka's own). Kafka answers a waiting fetch as soon as a record
    /// arrives, so this bounds only the polling of idle consumers, never an echo or a lag.
    pub fetch_wait_ms: u32,
}

/// Parses `key=value,key=value`.
fn parse_pairs(name: &str, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => Err(ConfigError { name: name.into(), value: text.into(), expected: "key=value pairs separated by commas" }),
        })
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
            topic_config: Vec::new(),
            compacted_topic_config: Vec::new(),
            fetch_wait_ms: 500,
        }
    }

    /// Reads the config from the environment; `None` when `KAFKA_BOOTSTRAP_SERVERS` is unset.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let Some(servers) = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok().filter(|s| !s.trim().is_empty()) else {
            return Ok(None);
        };
        Self::new(servers, env_or("TICKETING_NAMESPACE", "ticketing")).with_env_settings().map(Some)
    }

    /// Applies the optional settings of the environment (`KAFKA_PROPERTY_*`,
    /// `KAFKA_TOPIC_PARTITIONS`, `KAFKA_FETCH_WAIT_MAX_MS`, …) to a config whose brokers are
    /// known otherwise, such as the local broker's.
    pub fn with_env_settings(mut self) -> Result<Self, ConfigError> {
        self.extra = std::env::vars()
            .filter_map(|(k, v)| {
                k.strip_prefix("KAFKA_PROPERTY_")
                    .map(|name| (name.to_ascii_lowercase().replace('_', "."), SecretString::from(v)))
            })
            .collect();
        self.partitions = env_number("KAFKA_TOPIC_PARTITIONS", 6, 1, "a number of partitions, at least 1")?;
        self.replication_factor = env_number("KAFKA_REPLICATION_FACTOR", 1, 1, "a replication factor, at least 1")?;
        self.topic_config = parse_pairs("KAFKA_TOPIC_CONFIG", &env_or("KAFKA_TOPIC_CONFIG", ""))?;
        self.compacted_topic_config = parse_pairs("KAFKA_SCHEMAS_TOPIC_CONFIG", &env_or("KAFKA_SCHEMAS_TOPIC_CONFIG", ""))?;
        self.fetch_wait_ms = env_number("KAFKA_FETCH_WAIT_MAX_MS", 500, 0, "milliseconds, a whole number")?;
        Ok(self)
    }

    /// The full name of a topic of this deployment: `<namespace>.<name>`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{}", self.namespace, name)
    }

    /// The full name of a consumer group of this deployment.
    pub fn group(&self, name: &str) -> String {
        format!("{}.{}", self.namespace, name)
    }

    /// A producer config as every producer of the system needs it: `acks=all`, idempotence
    /// (retries never duplicate or reorder), and the Java client's murmur2 partitioner so
    /// ownership can compute partitions from keys. Callers add batching and timeouts.
    pub fn producer_config(&self) -> ClientConfig {
        let mut client = self.client_config();
        client
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random");
        client
    }

    /// A consumer's librdkafka config: [`LogConfig::client_config`] with the consumers'
    /// defaults under the extra properties.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        let set_by_operator = |key: &str| self.extra.iter().any(|(k, _)| k == key);
        // librdkafka stops fetching a partition for this long once its local queue holds
        // `queued.min.messages`; with its default (1 s) every reader through a backlog sat
        // idle most of the time (an export of 1M events: 200k records/s, and 900k/s at 20 ms).
        if !set_by_operator("fetch.queue.backoff.ms") {
            config.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        }
        config
    }

    /// A librdkafka config with the brokers and the extra properties set.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        // Fail fast when the broker is unreachable instead of retrying for minutes.
        config.set("socket.timeout.ms", "5000");
        for (key, value) in &self.extra {
            config.set(key, value.expose_secret());
        }
        config
    }
}

/// The consumers' `fetch.queue.backoff.ms` unless `KAFKA_PROPERTY_FETCH_QUEUE_BACKOFF_MS` says.
const FETCH_QUEUE_BACKOFF_MS: &str = "20";

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}
