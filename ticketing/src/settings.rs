//! Settings of the launcher, from environment variables with single-machine defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use platform::config::{ConfigError, env_number};
use platform::log::LogConfig;
use platform::store::CqlOptions;

/// Where the read models live.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// The embedded engine under a directory (default: `<data dir>/store`).
    Embedded {
        /// Directory of the store.
        path: PathBuf,
    },
    /// A CQL cluster: ScyllaDB in production (`SCYLLA_URI` set), or with `TICKETING_STORE=cql`
    /// and no `SCYLLA_URI`, a local Cassandra node started under `<data dir>/cassandra`.
    Scylla {
        /// Comma-separated `host:port` contact points; `None`: the local node.
        uri: Option<String>,
        /// CQL port of the local node (`TICKETING_CASSANDRA_PORT`, default 9042).
        local_port: u16,
        /// Prefix of the keyspaces (`SCYLLA_KEYSPACE_PREFIX`, default `tkt`; 1 to 7 characters,
        /// since keyspace names are at most 48).
        keyspace_prefix: String,
        /// Replication map of new keyspaces (`SCYLLA_REPLICATION`).
        replication: String,
        /// `SCYLLA_USERNAME` and `SCYLLA_PASSWORD`, when set.
        credentials: Option<(String, String)>,
        /// `SCYLLA_CONSISTENCY` (default `LOCAL_QUORUM`) and `SCYLLA_LOCAL_DC`.
        options: CqlOptions,
    },
}

/// Everything a component needs to know about its surroundings.
#[derive(Clone)]
pub struct Settings {
    /// Public address (`TICKETING_ADDR`, default `127.0.0.1:8080`; port 0 picks a free one).
    pub addr: SocketAddr,
    /// Local state: broker log, embedded store, generated JWT key (`TICKETING_DATA_DIR`,
    /// default `./data`).
    pub data_dir: PathBuf,
    /// Base URL peers use to forward commands to this instance (`TICKETING_ADVERTISED_URL`,
    /// default `http://<bound address>`; in Kubernetes `http://$(POD_IP):8080`).
    pub advertised_url: Option<String>,
    /// The external log (`KAFKA_BOOTSTRAP_SERVERS`); `None` starts a local Kafka broker.
    pub log: Option<LogConfig>,
    /// Topic and group prefix (`TICKETING_NAMESPACE`, default `ticketing`).
    pub namespace: String,
    /// Port of the local broker (`TICKETING_KAFKA_PORT`, default 9092).
    pub broker_port: u16,
    /// An external schema registry (`SCHEMA_REGISTRY_URL`); `None` serves the bundled one on
    /// the public port.
    pub registry_url: Option<String>,
    /// The read store.
    pub store: StoreSettings,
    /// HS256 key of session tokens (`JWT_KEY`; generated into the data dir when unset).
    pub jwt_key: String,
    /// Session lifetime in seconds (`SESSION_TTL_SECONDS`, default 86400).
    pub session_ttl_seconds: i64,
    /// Mark the session cookie `Secure` (`COOKIE_SECURE=true`).
    pub secure_cookie: bool,
    /// How long an order holds its ticket (`EXPIRATION_WINDOW_SECONDS`, default 900).
    pub expiration_window_seconds: i64,
    /// Stripe secret key (`STRIPE_SECRET_KEY`); unset: the sandbox gateway.
    pub stripe_secret_key: Option<String>,
    /// Stripe API base URL (`STRIPE_API_BASE`, default `https://api.stripe.com`).
    pub stripe_api_base: String,
    /// `/readyz` fails while a projector is more records behind than this (`READY_MAX_LAG`,
    /// default 10000).
    pub ready_max_lag: i64,
    /// Most tickets `GET /api/tickets` answers, the most recently listed (`TICKETS_LIST_LIMIT`,
    /// default 1000).
    pub tickets_list_limit: usize,
    /// How long a read list of tickets for sale is reused for requests without a tickets
    /// consistency token (`TICKETS_LIST_CACHE_MS`, default 250; 0 turns it off).
    pub tickets_list_cache_ms: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .field("log", &self.log.as_ref().map(|l| &l.bootstrap_servers))
            .field("namespace", &self.namespace)
            .field("registry_url", &self.registry_url)
            .field("store", &self.store)
            .field("jwt_key", &"<redacted>")
            .field("expiration_window_seconds", &self.expiration_window_seconds)
            .field("stripe", &self.stripe_secret_key.as_ref().map(|_| &self.stripe_api_base))
            .finish()
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// A whole number of at least 1 from the environment.
fn number(key: &str, default: i64) -> Result<i64, ConfigError> {
    env_number(key, default, 1, "a whole number of at least 1")
}

fn port(key: &str, default: u16) -> Result<u16, ConfigError> {
    env_number(key, default, 0, "a port number")
}

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let addr = env("TICKETING_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .context("TICKETING_ADDR must be host:port, e.g. 127.0.0.1:8080")?;
        let data_dir = PathBuf::from(env("TICKETING_DATA_DIR").unwrap_or_else(|| "data".into()));
        let namespace = env("TICKETING_NAMESPACE").unwrap_or_else(|| "ticketing".into());
        let log = LogConfig::from_env()?;
        let broker_port = port("TICKETING_KAFKA_PORT", 9092)?;
        let uri = env("SCYLLA_URI");
        let cql = match env("TICKETING_STORE").as_deref() {
            None => uri.is_some(),
            Some("cql") => true,
            Some("embedded") if uri.is_some() => {
                bail!("TICKETING_STORE=embedded contradicts SCYLLA_URI; unset one of them")
            }
            Some("embedded") => false,
            Some(other) => bail!("TICKETING_STORE={other:?} is invalid: use embedded or cql"),
        };
        let store = if cql {
            StoreSettings::Scylla {
                uri,
                local_port: port("TICKETING_CASSANDRA_PORT", 9042)?,
                keyspace_prefix: env("SCYLLA_KEYSPACE_PREFIX").unwrap_or_else(|| "tkt".into()),
                replication: env("SCYLLA_REPLICATION")
                    .unwrap_or_else(|| "{'class': 'SimpleStrategy', 'replication_factor': 1}".into()),
                credentials: env("SCYLLA_USERNAME").zip(env("SCYLLA_PASSWORD")),
                options: CqlOptions {
                    consistency: match env("SCYLLA_CONSISTENCY") {
                        None => CqlOptions::default().consistency,
                        Some(name) => CqlOptions::parse_consistency(&name).with_context(|| {
                            format!("SCYLLA_CONSISTENCY={name:?} is invalid: use ONE, LOCAL_ONE, QUORUM, LOCAL_QUORUM, EACH_QUORUM or ALL")
                        })?,
                    },
                    local_datacenter: env("SCYLLA_LOCAL_DC"),
                },
            }
        } else {
            StoreSettings::Embedded { path: data_dir.join("store") }
        };
        let jwt_key = match env("JWT_KEY") {
            Some(key) => key,
            None => generated_jwt_key(&data_dir)?,
        };
        Ok(Self {
            addr,
            data_dir,
            advertised_url: env("TICKETING_ADVERTISED_URL"),
            log,
            namespace,
            broker_port,
            registry_url: env("SCHEMA_REGISTRY_URL"),
            store,
            jwt_key,
            session_ttl_seconds: number("SESSION_TTL_SECONDS", 86_400)?,
            secure_cookie: env("COOKIE_SECURE").is_some_and(|v| v == "true" || v == "1"),
            expiration_window_seconds: env("EXPIRATION_WINDOW_SECONDS")
                .map(|s| s.parse().context("EXPIRATION_WINDOW_SECONDS must be a number of seconds"))
                .transpose()?
                .unwrap_or(900),
            stripe_secret_key: env("STRIPE_SECRET_KEY"),
            stripe_api_base: env("STRIPE_API_BASE").unwrap_or_else(|| "https://api.stripe.com".into()),
            ready_max_lag: number("READY_MAX_LAG", 10_000)?,
            tickets_list_limit: number("TICKETS_LIST_LIMIT", 1000)? as usize,
            tickets_list_cache_ms: env_number("TICKETS_LIST_CACHE_MS", 250, 0, "a whole number of milliseconds")?,
        })
    }
}

/// A random key kept in the data dir, so sessions survive restarts of a single-machine setup.
fn generated_jwt_key(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("jwt.key");
    if let Ok(key) = std::fs::read_to_string(&path)
        && !key.trim().is_empty()
    {
        return Ok(key.trim().to_string());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("Failed to create {}", data_dir.display()))?;
    let key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    std::fs::write(&path, &key).with_context(|| format!("Failed to write {}", path.display()))?;
    tracing::warn!(message = "JWT_KEY is not set; generated one.", path = %path.display());
    Ok(key)
}
