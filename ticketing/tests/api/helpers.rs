use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use platform::aggregate::Envelope;
use platform::local::LocalKafka;
use platform::codec::EventCodec;
use platform::log::{LogConfig, TopicReader};
use platform::session::SessionKeys;
use reqwest::{Method, StatusCode};
use schemas::codec::{AvroCodec, registry_settings};
use schemas::events::AvroEvent;
use schemas::tickets::TicketEvent;
use serde_json::Value;
use tempfile::TempDir;
use ticketing::app::{Application, Component};
use ticketing::settings::{Settings, StoreSettings};

pub const JWT_KEY: &str = "integration-test-key";
/// The deployments' master key (tests only).
pub const MASTER_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// Bearer token of the admin routes (tests only).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The Kafka broker a test talks to: the one this test binary shares (`start`), or one of the
/// test's own (`own`) when it stops, restarts or kills the broker.
pub struct TestBroker {
    own: Option<OwnBroker>,
    port: u16,
}

struct OwnBroker {
    broker: Option<LocalKafka>,
    dir: TempDir,
}

fn init_test_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("TEST_LOG").is_some() {
        ONCE.call_once(|| std::mem::forget(platform::telemetry::init_tracing()));
    }
}

impl TestBroker {
    /// The broker shared by every test of this binary.
    pub async fn start() -> Self {
        init_test_logs();
        Self { own: None, port: platform::local::shared::kafka().await.port() }
    }

    /// A broker of this test's own, with its log in a temporary directory.
    pub async fn own() -> Self {
        init_test_logs();
        let dir = tempfile::tempdir().unwrap();
        let broker = LocalKafka::start(dir.path(), 0).await.expect("the broker starts");
        let port = broker.port();
        Self { own: Some(OwnBroker { broker: Some(broker), dir }), port }
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn owned(&mut self) -> &mut OwnBroker {
        self.own.as_mut().expect("only a test's own broker (TestBroker::own) can be stopped or killed")
    }

    /// Freezes the broker process (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&mut self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&mut self, signal: &str) {
        let pid = self.owned().broker.as_ref().and_then(LocalKafka::pid).expect("the broker runs");
        let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Stops the broker cleanly.
    pub async fn stop(&mut self) {
        if let Some(broker) = self.owned().broker.take() {
            broker.stop().await.unwrap();
        }
    }

    /// Starts the broker again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let port = self.port;
        let own = self.owned();
        own.broker = Some(LocalKafka::start(own.dir.path(), port).await.expect("the broker restarts"));
    }
}

/// The read store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded engine in the deployment's data directory.
    Embedded,
    /// The Cassandra node this test binary shares, in keyspaces of the deployment's own.
    Cql,
}

tokio::task_local! {
    static STORE: StoreKind;
}

/// Runs a test body with deployments on `kind` (see [`both_stores!`]).
pub async fn with_store(kind: StoreKind, body: impl std::future::Future<Output = ()>) {
    STORE.scope(kind, body).await
}

/// Declares an async test that runs twice, on the embedded store (`<name>::embedded`) and on
/// the CQL store (`<name>::cql`): every [`Deployment`] the body makes uses that store.
#[allow(unused_macros)]
macro_rules! both_stores {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                $crate::helpers::with_store($crate::helpers::StoreKind::Embedded, async $body).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cql() {
                $crate::helpers::with_store($crate::helpers::StoreKind::Cql, async $body).await
            }
        }
    };
}

/// A test deployment: its own namespace on the broker, its own data directory and its own
/// read store (a directory, or keyspaces with a prefix of its own on the shared node).
pub struct Deployment {
    pub namespace: String,
    pub data: TempDir,
    pub bootstrap_servers: String,
    pub expiration_window_seconds: i64,
    pub store: StoreKind,
    /// `host:port` of the CQL node, with [`StoreKind::Cql`].
    cql_uri: Option<String>,
    keyspace_prefix: String,
}

impl Deployment {
    /// A deployment on the store of the running [`both_stores!`] variant (embedded outside one).
    pub async fn new(broker: &TestBroker) -> Self {
        let store = STORE.try_with(|kind| *kind).unwrap_or(StoreKind::Embedded);
        let cql_uri = match store {
            StoreKind::Cql => Some(platform::local::shared::cassandra().await.uri()),
            StoreKind::Embedded => None,
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            namespace: format!("t{}", &id[..12]),
            data: tempfile::tempdir().unwrap(),
            bootstrap_servers: broker.bootstrap_servers(),
            expiration_window_seconds: 900,
            store,
            cql_uri,
            // Keyspaces are `<prefix>_<read-model namespace>`: a prefix per deployment keeps
            // tests apart on the shared node (at most 7 characters).
            keyspace_prefix: format!("t{}", &id[12..18]),
        }
    }

    /// Loses every read model: the embedded store's directory is removed; on CQL the
    /// deployment moves to keyspaces of a new prefix, as empty as a dropped store.
    pub fn drop_store(&mut self) {
        match self.store {
            StoreKind::Embedded => remove_dir(&self.store_dir()),
            StoreKind::Cql => self.keyspace_prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..6]),
        }
    }

    /// `ticketing <args>` as an operator runs it against this deployment (its log, namespace,
    /// data directory and store; the bundled registry it starts itself).
    pub fn tool(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"));
        command
            .args(args)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap_servers)
            .env("TICKETING_NAMESPACE", &self.namespace)
            .env("TICKETING_DATA_DIR", self.data.path())
            .env("JWT_KEY", JWT_KEY)
            .env("TICKETING_MASTER_KEY", MASTER_KEY)
            .env_remove("SCHEMA_REGISTRY_URL")
            .env_remove("SCYLLA_URI")
            .envs(self.store_env());
        command
    }

    /// The environment of a `ticketing` subprocess on this deployment's store.
    pub fn store_env(&self) -> Vec<(&'static str, String)> {
        match &self.cql_uri {
            Some(uri) => vec![
                ("TICKETING_STORE", "cql".into()),
                ("SCYLLA_URI", uri.clone()),
                ("SCYLLA_KEYSPACE_PREFIX", self.keyspace_prefix.clone()),
            ],
            None => vec![("TICKETING_STORE", "embedded".into())],
        }
    }

    pub fn log(&self) -> LogConfig {
        let mut log = LogConfig::new(self.bootstrap_servers.clone(), self.namespace.clone());
        log.partitions = 3;
        log
    }

    pub fn store_dir(&self) -> PathBuf {
        self.data.path().join("store")
    }

    pub fn settings(&self) -> Settings {
        Settings {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: self.data.path().to_path_buf(),
            internal_addr: "127.0.0.1:0".parse().unwrap(),
            advertised_url: None,
            log: Some(self.log()),
            namespace: self.namespace.clone(),
            broker_port: 0,
            registry_url: None,
            store: match &self.cql_uri {
                Some(uri) => StoreSettings::Scylla {
                    uri: Some(uri.clone()),
                    local_port: 0,
                    keyspace_prefix: self.keyspace_prefix.clone(),
                    replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
                    credentials: None,
                    options: Default::default(),
                },
                None => StoreSettings::Embedded { path: self.store_dir() },
            },
            jwt_key: JWT_KEY.into(),
            session_ttl_seconds: 3600,
            master_key: platform::vault::MasterKey::parse(MASTER_KEY).unwrap(),
            admin_token: Some(ADMIN_TOKEN.into()),
            secure_cookie: false,
            ready_max_lag: 10_000,
            tickets_list_limit: 1000,
            // Tests read lists right after writes without always passing a token.
            tickets_list_cache_ms: 0,
            expiration_window_seconds: self.expiration_window_seconds,
            stripe_secret_key: None,
            stripe_api_base: "http://127.0.0.1:9".into(),
            stripe_publishable_key: None,
            request_timeout_ms: 10_000,
            max_in_flight: 1024,
            payment_reconcile_after_seconds: 30,
            // Tests sign many users up from one address; the throttling test sets its own.
            sign_in_limits: users_command::throttle::SignInLimits {
                per_address: None,
                per_account_address: platform::throttle::parse_rate_limit("5/5m").unwrap(),
                per_account: platform::throttle::parse_rate_limit("20/1h").unwrap(),
            },
            trusted_proxies: Default::default(),
            live: Default::default(),
            web_dir: "web/dist".into(),
        }
    }

    /// Starts every component, as `ticketing up` does.
    pub async fn spawn(&self) -> TestApp {
        self.spawn_with(|_| ()).await
    }

    /// Starts every component with settings changed by `change`.
    pub async fn spawn_with(&self, change: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings();
        change(&mut settings);
        TestApp::start(settings, &Component::ALL).await
    }
}

pub struct TestApp {
    app: Option<Application>,
    pub base: String,
    /// Base URL of the internal listener (command forwarding), when a command service runs.
    pub internal: Option<String>,
    pub client: reqwest::Client,
}

impl TestApp {
    pub async fn start(settings: Settings, components: &[Component]) -> Self {
        let app = Application::build(settings, components).await.expect("the application starts");
        tokio::time::timeout(Duration::from_secs(60), app.wait_ready())
            .await
            .expect("the command sides catch up with the log within a minute");
        let base = format!("http://{}", app.addr());
        let internal = app.internal_addr().map(|addr| format!("http://{addr}"));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        let this = Self { app: Some(app), base, internal, client };
        if components.contains(&Component::ProjectorTickets) {
            this.wait_until_ready().await;
        }
        this
    }

    pub async fn wait_until_ready(&self) {
        for _ in 0..300 {
            if let Ok(r) = self.client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the application did not become ready");
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.unwrap();
        }
    }

    pub fn registry_url(&self) -> String {
        self.base.clone()
    }

    /// A browser-like client of this app: it keeps the session cookie the app sets.
    pub fn browser(&self) -> Browser<'_> {
        Browser { app: self, cookie: None }
    }

    /// Polls `path` until `check` holds (for effects of process managers and workers).
    pub async fn eventually(&self, path: &str, user: Option<&str>, limit: Duration, check: impl Fn(&Reply) -> bool) -> Reply {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let reply = self.request(Method::GET, path, user, None).await;
            if check(&reply) {
                return reply;
            }
            assert!(std::time::Instant::now() < deadline, "{path} never reached the expected state: {reply:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn request(&self, method: Method, path: &str, user: Option<&str>, body: Option<Value>) -> Reply {
        self.send(method, path, user, body, &[]).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(user) = user {
            request = request.header("cookie", session_cookie(user));
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::from(request.send().await.expect("the request is answered")).await
    }

    pub async fn create_ticket(&self, user: &str, title: &str, price: f64) -> Reply {
        let reply = self
            .request(Method::POST, "/api/tickets", Some(user), Some(serde_json::json!({"title": title, "price": price})))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply
    }

    /// GET with the consistency token of an earlier command answer.
    pub async fn get_after(&self, path: &str, after: &Reply) -> Reply {
        self.get_after_as(path, None, after).await
    }

    /// GET as `user` with the consistency token of an earlier command answer.
    pub async fn get_after_as(&self, path: &str, user: Option<&str>, after: &Reply) -> Reply {
        let token = after.consistency_token.clone().expect("the command answer has a token");
        self.send(Method::GET, path, user, None, &[("x-consistency-token", token)]).await
    }
}

/// Sends only the cookies the app set, like a browser.
pub struct Browser<'a> {
    app: &'a TestApp,
    pub cookie: Option<String>,
}

impl Browser<'_> {
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut headers = Vec::new();
        if let Some(cookie) = &self.cookie {
            headers.push(("cookie", cookie.clone()));
        }
        let mut request = self.app.client.request(method, format!("{}{}", self.app.base, path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = Reply::from(request.send().await.unwrap()).await;
        if let Some(set) = reply.headers.get("set-cookie").and_then(|v| v.to_str().ok()) {
            let pair = set.split(';').next().unwrap_or_default().trim().to_string();
            // A value of nothing clears it; base64 padding (`…==`) does not.
            let cleared = pair.split_once('=').is_none_or(|(_, value)| value.is_empty()) || set.contains("Max-Age=0");
            self.cookie = if cleared { None } else { Some(pair) };
        }
        reply
    }

    pub async fn signup(&mut self, email: &str, password: &str) -> Reply {
        self.send(Method::POST, "/api/users/signup", Some(serde_json::json!({"email": email, "password": password}))).await
    }
}

/// A session cookie as the reference app's cookie-session writes it.
pub fn session_cookie(user: &str) -> String {
    let keys = SessionKeys::new(JWT_KEY.as_bytes(), 3600, false);
    let token = keys.mint(user, &format!("{user}@example.com"), chrono::Utc::now().timestamp());
    keys.session_cookie(&token).split(';').next().unwrap().to_string()
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub consistency_token: Option<String>,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let consistency_token =
            headers.get("x-consistency-token").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Self { status, body, consistency_token, headers }
    }

    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("the body has an id").to_string()
    }

    /// Asserts the reference app's error shape.
    pub fn assert_error_shape(&self) {
        let errors = self.body["errors"].as_array().unwrap_or_else(|| panic!("no errors array in {self:?}"));
        assert!(!errors.is_empty(), "{self:?}");
        for error in errors {
            assert!(error["message"].is_string(), "{self:?}");
        }
    }
}

/// A codec for the deployment's tickets topic, against the registry at `registry_url`.
pub fn ticket_codec(log: &LogConfig, registry_url: &str) -> Arc<AvroCodec<TicketEvent>> {
    Arc::new(AvroCodec::new(log.topic(TicketEvent::TOPIC), registry_settings(registry_url).unwrap()))
}

/// Every record of the tickets topic, decoded, in partition order per partition.
pub async fn read_ticket_log(log: &LogConfig, registry_url: &str) -> Vec<Envelope<TicketEvent>> {
    let codec = ticket_codec(log, registry_url);
    // Right after a broker restart its metadata may still name no leader: ask again a while.
    let mut attempts = 0;
    let reader = loop {
        match TopicReader::from_beginning(log, &log.topic(TicketEvent::TOPIC)) {
            Ok(reader) => break reader,
            Err(error) if attempts < 40 => {
                attempts += 1;
                eprintln!("the tickets topic is not readable yet ({error}); retrying");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(error) => panic!("the tickets topic never became readable: {error}"),
        }
    };
    let ends = reader.end_offsets();
    let mut records = Vec::new();
    reader.read_until(&ends, |r| records.push(r)).await.unwrap();
    records.sort_by_key(|r| r.position);
    let mut events = Vec::new();
    for record in records {
        events.push(codec.decode(record.payload.as_deref().unwrap()).await.unwrap());
    }
    events
}

pub fn remove_dir(path: &Path) {
    std::fs::remove_dir_all(path).unwrap();
}

/// How often each command id occurs among the committed records of an inbox.
pub async fn committed_commands(log: &LogConfig, inbox: &str) -> std::collections::BTreeMap<String, usize> {
    let reader = platform::log::TopicReader::from_beginning(log, inbox).unwrap();
    let ends = reader.end_offsets();
    let mut commands = std::collections::BTreeMap::new();
    reader
        .read_until(&ends, |record| {
            let request: serde_json::Value = serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap();
            *commands.entry(request["command_id"].as_str().unwrap().to_string()).or_default() += 1;
        })
        .await
        .unwrap();
    commands
}
