//! Settings of the launcher: flags or environment variables with single-machine defaults,
//! parsed once by clap into typed values (secrets in `secrecy` types, never printed).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use platform::log::LogConfig;
use secrecy::{ExposeSecret, SecretString};
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
        credentials: Option<(String, SecretString)>,
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
    /// Internal address: command forwarding between instances, never public
    /// (`TICKETING_INTERNAL_ADDR`, default `127.0.0.1:0`, a free port).
    pub internal_addr: SocketAddr,
    /// Base URL of the internal listener, where peers forward commands to this instance
    /// (`TICKETING_ADVERTISED_URL`, default `http://<internal bound address>`; in Kubernetes
    /// `http://$(POD_IP):8081`).
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
    pub jwt_key: SecretString,
    /// Session lifetime in seconds (`SESSION_TTL_SECONDS`, default 86400).
    pub session_ttl_seconds: i64,
    /// Wraps every user's data key and keys the email index (`TICKETING_MASTER_KEY`, or the
    /// file `TICKETING_MASTER_KEY_FILE`; 64 hex digits or base64 of 32 bytes; generated into
    /// the data dir when neither is set).
    pub master_key: platform::vault::MasterKey,
    /// Bearer token of the admin routes (`TICKETING_ADMIN_TOKEN`; unset: they answer 404).
    pub admin_token: Option<SecretString>,
    /// Mark the session cookie `Secure` (`COOKIE_SECURE=true`).
    pub secure_cookie: bool,
    /// How long an order holds its ticket (`EXPIRATION_WINDOW_SECONDS`, default 900).
    pub expiration_window_seconds: i64,
    /// Stripe secret key (`STRIPE_SECRET_KEY`); unset: the sandbox gateway.
    pub stripe_secret_key: Option<SecretString>,
    /// Stripe API base URL (`STRIPE_API_BASE`, default `https://api.stripe.com`).
    pub stripe_api_base: String,
    /// Stripe publishable key the web client takes card details with
    /// (`STRIPE_PUBLISHABLE_KEY`); unset: the client offers the sandbox's test tokens.
    pub stripe_publishable_key: Option<String>,
    /// `/readyz` fails while a projector is more records behind than this (`READY_MAX_LAG`,
    /// default 10000).
    pub ready_max_lag: i64,
    /// Most tickets `GET /api/tickets` answers, the most recently listed (`TICKETS_LIST_LIMIT`,
    /// default 1000).
    pub tickets_list_limit: usize,
    /// How long a read list of tickets for sale is reused for requests without a tickets
    /// consistency token (`TICKETS_LIST_CACHE_MS`, default 250; 0 turns it off).
    pub tickets_list_cache_ms: u64,
    /// Bounds of `GET /api/live` (`LIVE_STREAMS_PER_USER` default 5, `LIVE_STREAMS_MAX`
    /// default 10000, `LIVE_REPLAY_CHANGES` default 10000).
    pub live: query_api::live::LiveLimits,
    /// The built web client served at `/` (`TICKETING_WEB_DIR`, default `web/dist`); a
    /// directory without `index.html` serves a page saying how to build it.
    pub web_dir: PathBuf,
    /// The deadline of every public request, all its steps included
    /// (`TICKETING_REQUEST_TIMEOUT_MS`, default 10000).
    pub request_timeout_ms: u64,
    /// Public requests in flight at most; more are answered 503 with `Retry-After` at once
    /// (`TICKETING_MAX_IN_FLIGHT`, default 1024).
    pub max_in_flight: usize,
    /// How long a payment may stay unfinished (an attempt in flight, a charge whose order is
    /// not complete) before the reconciler finishes it (`PAYMENT_RECONCILE_AFTER_SECONDS`,
    /// default 30).
    pub payment_reconcile_after_seconds: u64,
    /// Sign-in and sign-up limits (`SIGNIN_LIMIT_PER_ADDRESS`, default `30/5m`;
    /// `SIGNIN_LIMIT_PER_ACCOUNT_ADDRESS`, default `5/5m`; `SIGNIN_LIMIT_PER_ACCOUNT`, default
    /// `20/1h`; each `off` or `<attempts>/<period>`).
    pub sign_in_limits: users_command::throttle::SignInLimits,
    /// Proxies whose `X-Forwarded-For` names the client (`TICKETING_TRUSTED_PROXIES`,
    /// comma-separated addresses or CIDR ranges; default none: the peer is the client).
    pub trusted_proxies: platform::throttle::TrustedProxies,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field("internal_addr", &self.internal_addr)
            .field("data_dir", &self.data_dir)
            .field("log", &self.log.as_ref().map(|l| &l.bootstrap_servers))
            .field("namespace", &self.namespace)
            .field("registry_url", &self.registry_url)
            .field("store", &self.store)
            .field("expiration_window_seconds", &self.expiration_window_seconds)
            .field("stripe_api_base", &self.stripe_api_base)
            .finish()
    }
}

/// The launcher's settings as they come in: each one from a flag or its environment variable,
/// parsed once and typed, so a malformed value stops start-up with a message naming it.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Settings (flags or environment variables)")]
pub struct SettingsArgs {
    /// Public address; port 0 picks a free one.
    #[arg(long, env = "TICKETING_ADDR", value_name = "TICKETING_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Local state: broker log, embedded store, generated JWT key.
    #[arg(long, env = "TICKETING_DATA_DIR", value_name = "TICKETING_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Internal address (command forwarding between instances); port 0 picks a free one.
    #[arg(long, env = "TICKETING_INTERNAL_ADDR", value_name = "TICKETING_INTERNAL_ADDR", default_value = "127.0.0.1:0")]
    pub internal_addr: SocketAddr,
    /// Base URL of the internal listener, where peers forward commands to this instance.
    #[arg(long, env = "TICKETING_ADVERTISED_URL", value_name = "TICKETING_ADVERTISED_URL", value_parser = http_url)]
    pub advertised_url: Option<String>,
    /// Topic and group prefix.
    #[arg(long, env = "TICKETING_NAMESPACE", value_name = "TICKETING_NAMESPACE", default_value = "ticketing", value_parser = name_part)]
    pub namespace: String,
    /// Port of the local broker (when KAFKA_BOOTSTRAP_SERVERS is unset).
    #[arg(long, env = "TICKETING_KAFKA_PORT", value_name = "TICKETING_KAFKA_PORT", default_value_t = 9092)]
    pub kafka_port: u16,
    /// An external schema registry; unset serves the bundled one on the public port.
    #[arg(long, env = "SCHEMA_REGISTRY_URL", value_name = "SCHEMA_REGISTRY_URL", value_parser = http_url)]
    pub schema_registry_url: Option<String>,
    /// The read store: `embedded`, or `cql` (ScyllaDB at SCYLLA_URI, or a local Cassandra node).
    #[arg(long, env = "TICKETING_STORE", value_name = "TICKETING_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// Comma-separated `host:port` contact points of the CQL cluster.
    #[arg(long, env = "SCYLLA_URI", value_name = "SCYLLA_URI")]
    pub scylla_uri: Option<String>,
    /// CQL port of the local Cassandra node.
    #[arg(long, env = "TICKETING_CASSANDRA_PORT", value_name = "TICKETING_CASSANDRA_PORT", default_value_t = 9042)]
    pub cassandra_port: u16,
    /// Prefix of the keyspaces (1 to 7 letters, digits or `_`; keyspace names are at most 48).
    #[arg(long, env = "SCYLLA_KEYSPACE_PREFIX", value_name = "SCYLLA_KEYSPACE_PREFIX", default_value = "tkt", value_parser = keyspace_prefix)]
    pub scylla_keyspace_prefix: String,
    /// Replication map of new keyspaces.
    #[arg(long, env = "SCYLLA_REPLICATION", value_name = "SCYLLA_REPLICATION", default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}")]
    pub scylla_replication: String,
    /// CQL user name (with SCYLLA_PASSWORD).
    #[arg(long, env = "SCYLLA_USERNAME", value_name = "SCYLLA_USERNAME")]
    pub scylla_username: Option<String>,
    /// CQL password (with SCYLLA_USERNAME).
    #[arg(long, env = "SCYLLA_PASSWORD", value_name = "SCYLLA_PASSWORD", hide_env_values = true)]
    pub scylla_password: Option<SecretString>,
    /// Consistency of every statement: ONE, LOCAL_ONE, QUORUM, LOCAL_QUORUM, EACH_QUORUM or ALL.
    #[arg(long, env = "SCYLLA_CONSISTENCY", value_name = "SCYLLA_CONSISTENCY", value_parser = consistency)]
    pub scylla_consistency: Option<platform::store::Consistency>,
    /// The local datacenter of the token-aware, DC-aware policy.
    #[arg(long, env = "SCYLLA_LOCAL_DC", value_name = "SCYLLA_LOCAL_DC")]
    pub scylla_local_dc: Option<String>,
    /// HS256 key of session tokens; unset generates one into the data dir.
    #[arg(long, env = "JWT_KEY", value_name = "JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<SecretString>,
    /// Master key: wraps the users' data keys and keys the email index (64 hex digits or the
    /// base64 of 32 bytes); unset (and no TICKETING_MASTER_KEY_FILE) generates one into the
    /// data dir.
    #[arg(long, env = "TICKETING_MASTER_KEY", value_name = "TICKETING_MASTER_KEY", hide_env_values = true, conflicts_with = "master_key_file")]
    pub master_key: Option<SecretString>,
    /// A file holding the master key (a mounted secret).
    #[arg(long, env = "TICKETING_MASTER_KEY_FILE", value_name = "TICKETING_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Bearer token of the admin routes (`DELETE /api/admin/users/{id}`); unset turns them off.
    #[arg(long, env = "TICKETING_ADMIN_TOKEN", value_name = "TICKETING_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,
    /// Session lifetime in seconds.
    #[arg(long, env = "SESSION_TTL_SECONDS", value_name = "SESSION_TTL_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(1..))]
    pub session_ttl_seconds: i64,
    /// Mark the session cookie `Secure` (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`).
    #[arg(long, env = "COOKIE_SECURE", value_name = "COOKIE_SECURE", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub cookie_secure: bool,
    /// How long an order holds its ticket, in seconds.
    #[arg(long, env = "EXPIRATION_WINDOW_SECONDS", value_name = "EXPIRATION_WINDOW_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(i64).range(1..))]
    pub expiration_window_seconds: i64,
    /// Stripe secret key; unset uses the sandbox gateway.
    #[arg(long, env = "STRIPE_SECRET_KEY", value_name = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<SecretString>,
    /// Stripe API base URL.
    #[arg(long, env = "STRIPE_API_BASE", value_name = "STRIPE_API_BASE", default_value = "https://api.stripe.com", value_parser = http_url)]
    pub stripe_api_base: String,
    /// Stripe publishable key (`pk_test_…` or `pk_live_…`) the web client takes cards with.
    #[arg(long, env = "STRIPE_PUBLISHABLE_KEY", value_name = "STRIPE_PUBLISHABLE_KEY", value_parser = stripe_publishable_key)]
    pub stripe_publishable_key: Option<String>,
    /// `/readyz` fails while a projector is more records behind than this.
    #[arg(long, env = "READY_MAX_LAG", value_name = "READY_MAX_LAG", default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub ready_max_lag: i64,
    /// Most tickets `GET /api/tickets` answers, the most recently listed.
    #[arg(long, env = "TICKETS_LIST_LIMIT", value_name = "TICKETS_LIST_LIMIT", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tickets_list_limit: u64,
    /// How long a read list of tickets for sale is reused for requests without a tickets
    /// consistency token, in milliseconds (0 turns it off).
    #[arg(long, env = "TICKETS_LIST_CACHE_MS", value_name = "TICKETS_LIST_CACHE_MS", default_value_t = 250)]
    pub tickets_list_cache_ms: u64,
    /// Open live-update streams (`GET /api/live`) per user at most; more are answered 429.
    #[arg(long, env = "LIVE_STREAMS_PER_USER", value_name = "LIVE_STREAMS_PER_USER", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub live_streams_per_user: u64,
    /// Open live-update streams per process at most; more are answered 429.
    #[arg(long, env = "LIVE_STREAMS_MAX", value_name = "LIVE_STREAMS_MAX", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub live_streams_max: u64,
    /// Recent changes kept so a reconnecting stream resumes with `Last-Event-ID`.
    #[arg(long, env = "LIVE_REPLAY_CHANGES", value_name = "LIVE_REPLAY_CHANGES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub live_replay_changes: u64,
    /// Directory of the built web client, served at `/`.
    #[arg(long, env = "TICKETING_WEB_DIR", value_name = "TICKETING_WEB_DIR", default_value = "web/dist")]
    pub web_dir: PathBuf,
    /// The deadline of every public request, all its steps included, in milliseconds.
    #[arg(long, env = "TICKETING_REQUEST_TIMEOUT_MS", value_name = "TICKETING_REQUEST_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Public requests in flight at most; more are answered 503 with `Retry-After` at once.
    #[arg(long, env = "TICKETING_MAX_IN_FLIGHT", value_name = "TICKETING_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,
    /// Seconds a payment may stay unfinished before the reconciler finishes it.
    #[arg(long, env = "PAYMENT_RECONCILE_AFTER_SECONDS", value_name = "PAYMENT_RECONCILE_AFTER_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub payment_reconcile_after_seconds: u64,
    /// Attempts (sign-in and sign-up) from one client address: `off` or `<attempts>/<period>`
    /// (period in s, m or h); a successful sign-in gives its attempt back.
    #[arg(long, env = "SIGNIN_LIMIT_PER_ADDRESS", value_name = "SIGNIN_LIMIT_PER_ADDRESS", default_value = "30/5m", value_parser = rate_limit)]
    pub signin_limit_per_address: RateLimitArg,
    /// Failed attempts on one account from one client address.
    #[arg(long, env = "SIGNIN_LIMIT_PER_ACCOUNT_ADDRESS", value_name = "SIGNIN_LIMIT_PER_ACCOUNT_ADDRESS", default_value = "5/5m", value_parser = rate_limit)]
    pub signin_limit_per_account_address: RateLimitArg,
    /// Failed attempts on one account from addresses it has not signed in from.
    #[arg(long, env = "SIGNIN_LIMIT_PER_ACCOUNT", value_name = "SIGNIN_LIMIT_PER_ACCOUNT", default_value = "20/1h", value_parser = rate_limit)]
    pub signin_limit_per_account: RateLimitArg,
    /// Proxies whose `X-Forwarded-For` names the client: comma-separated addresses or CIDR
    /// ranges (unset: the connecting peer is the client).
    #[arg(long, env = "TICKETING_TRUSTED_PROXIES", value_name = "TICKETING_TRUSTED_PROXIES", default_value = "", value_parser = trusted_proxies)]
    pub trusted_proxies: platform::throttle::TrustedProxies,
}

/// A parsed rate limit (`None`: `off`).
#[derive(Debug, Clone, Copy)]
pub struct RateLimitArg(pub Option<platform::throttle::RateLimit>);

fn rate_limit(value: &str) -> Result<RateLimitArg, String> {
    platform::throttle::parse_rate_limit(value).map(RateLimitArg).map_err(|e| e.to_string())
}

fn trusted_proxies(value: &str) -> Result<platform::throttle::TrustedProxies, String> {
    value.parse().map_err(|e: platform::throttle::TrustedProxiesParseError| e.to_string())
}

/// Which read store `TICKETING_STORE` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// The embedded engine under the data dir.
    Embedded,
    /// A CQL cluster or the local Cassandra node.
    Cql,
}

/// A Stripe publishable key: `pk_test_` or `pk_live_` and its characters.
fn stripe_publishable_key(text: &str) -> Result<String, String> {
    let valid = (text.starts_with("pk_test_") || text.starts_with("pk_live_"))
        && text.len() <= 255
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(text.to_string())
    } else {
        Err("expected a Stripe publishable key (pk_test_… or pk_live_…)".into())
    }
}

fn http_url(value: &str) -> Result<String, String> {
    let url = value.trim().trim_end_matches('/');
    match url.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(url.to_string()),
        _ => Err("expected an http:// or https:// URL".into()),
    }
}

fn name_part(value: &str) -> Result<String, String> {
    let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(value.to_string()) } else { Err("expected letters, digits, '-' or '_'".into()) }
}

fn keyspace_prefix(value: &str) -> Result<String, String> {
    let ok = (1..=7).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(value.to_string()) } else { Err("expected 1 to 7 letters, digits or '_'".into()) }
}

fn consistency(value: &str) -> Result<platform::store::Consistency, String> {
    CqlOptions::parse_consistency(value)
        .ok_or_else(|| "expected ONE, LOCAL_ONE, QUORUM, LOCAL_QUORUM, EACH_QUORUM or ALL".into())
}

/// Only the settings, for callers without subcommands (`Settings::from_env`).
#[derive(clap::Parser)]
struct SettingsOnly {
    #[command(flatten)]
    args: SettingsArgs,
}

impl Settings {
    /// Reads the settings from the environment alone.
    pub fn from_env() -> anyhow::Result<Self> {
        use clap::Parser;
        let only = SettingsOnly::try_parse_from(["ticketing"]).map_err(|e| anyhow::anyhow!(e.to_string()))?;
        Self::from_args(only.args)
    }

    /// The settings from parsed flags and environment variables, plus the Kafka settings
    /// (`KAFKA_*`, read by [`LogConfig::from_env`]).
    pub fn from_args(args: SettingsArgs) -> anyhow::Result<Self> {
        let log = LogConfig::from_env()?;
        let cql = match args.store {
            None => args.scylla_uri.is_some(),
            Some(StoreKind::Cql) => true,
            Some(StoreKind::Embedded) if args.scylla_uri.is_some() => {
                bail!("TICKETING_STORE=embedded contradicts SCYLLA_URI; unset one of them")
            }
            Some(StoreKind::Embedded) => false,
        };
        let credentials = match (args.scylla_username, args.scylla_password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => bail!("SCYLLA_USERNAME and SCYLLA_PASSWORD go together: set both or neither"),
        };
        let store = if cql {
            StoreSettings::Scylla {
                uri: args.scylla_uri,
                local_port: args.cassandra_port,
                keyspace_prefix: args.scylla_keyspace_prefix,
                replication: args.scylla_replication,
                credentials,
                options: CqlOptions {
                    consistency: args.scylla_consistency.unwrap_or(CqlOptions::default().consistency),
                    local_datacenter: args.scylla_local_dc,
                },
            }
        } else {
            StoreSettings::Embedded { path: args.data_dir.join("store") }
        };
        let jwt_key = match args.jwt_key {
            Some(key) => key,
            None => generated_jwt_key(&args.data_dir)?,
        };
        let master_key = match (&args.master_key, &args.master_key_file) {
            (Some(key), _) => platform::vault::MasterKey::parse(key.expose_secret())
                .map_err(|e| anyhow::anyhow!("TICKETING_MASTER_KEY: {e}"))?,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("TICKETING_MASTER_KEY_FILE: cannot read {}", path.display()))?;
                platform::vault::MasterKey::parse(&text)
                    .map_err(|e| anyhow::anyhow!("TICKETING_MASTER_KEY_FILE ({}): {e}", path.display()))?
            }
            (None, None) => generated_master_key(&args.data_dir)?,
        };
        if args.admin_token.as_ref().is_some_and(|t| t.expose_secret().trim().len() < 16) {
            bail!("TICKETING_ADMIN_TOKEN: use at least 16 characters");
        }
        Ok(Self {
            addr: args.addr,
            data_dir: args.data_dir,
            internal_addr: args.internal_addr,
            advertised_url: args.advertised_url,
            log,
            namespace: args.namespace,
            broker_port: args.kafka_port,
            registry_url: args.schema_registry_url,
            store,
            jwt_key,
            session_ttl_seconds: args.session_ttl_seconds,
            master_key,
            admin_token: args.admin_token,
            secure_cookie: args.cookie_secure,
            expiration_window_seconds: args.expiration_window_seconds,
            stripe_secret_key: args.stripe_secret_key,
            stripe_api_base: args.stripe_api_base,
            stripe_publishable_key: args.stripe_publishable_key,
            ready_max_lag: args.ready_max_lag,
            tickets_list_limit: args.tickets_list_limit as usize,
            tickets_list_cache_ms: args.tickets_list_cache_ms,
            live: query_api::live::LiveLimits {
                per_user: args.live_streams_per_user as usize,
                total: args.live_streams_max as usize,
                replay: args.live_replay_changes as usize,
            },
            web_dir: args.web_dir,
            request_timeout_ms: args.request_timeout_ms,
            max_in_flight: args.max_in_flight as usize,
            payment_reconcile_after_seconds: args.payment_reconcile_after_seconds,
            sign_in_limits: users_command::throttle::SignInLimits {
                per_address: args.signin_limit_per_address.0,
                per_account_address: args.signin_limit_per_account_address.0,
                per_account: args.signin_limit_per_account.0,
            },
            trusted_proxies: args.trusted_proxies,
        })
    }
}

/// A random key kept in the data dir, so sessions survive restarts of a single-machine setup.
/// The master key kept in `<data dir>/master.key` (readable by its owner only), made on first
/// use: a single machine keeps its users' data readable across restarts.
fn generated_master_key(data_dir: &std::path::Path) -> anyhow::Result<platform::vault::MasterKey> {
    let path = data_dir.join("master.key");
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return platform::vault::MasterKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("Failed to create {}", data_dir.display()))?;
    let key = platform::vault::MasterKey::generate_hex();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    match options.open(&path) {
        Ok(mut file) => file.write_all(key.as_bytes()).with_context(|| format!("Failed to write {}", path.display()))?,
        // Another process of this machine made it a moment ago: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let text = std::fs::read_to_string(&path).with_context(|| format!("Failed to read {}", path.display()))?;
            return platform::vault::MasterKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        }
        Err(error) => return Err(error).with_context(|| format!("Failed to write {}", path.display())),
    }
    tracing::warn!(message = "TICKETING_MASTER_KEY is not set; generated one.", path = %path.display());
    platform::vault::MasterKey::parse(&key).map_err(|e| anyhow::anyhow!("{e}"))
}

fn generated_jwt_key(data_dir: &std::path::Path) -> anyhow::Result<SecretString> {
    let path = data_dir.join("jwt.key");
    if let Ok(key) = std::fs::read_to_string(&path)
        && !key.trim().is_empty()
    {
        return Ok(key.trim().into());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("Failed to create {}", data_dir.display()))?;
    let key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    std::fs::write(&path, &key).with_context(|| format!("Failed to write {}", path.display()))?;
    tracing::warn!(message = "JWT_KEY is not set; generated one.", path = %path.display());
    Ok(key.into())
}
