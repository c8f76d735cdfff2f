//! `ticketing up` as a user runs it (its own Kafka broker under the data directory), stopped
//! cleanly or killed with SIGKILL, then started again on the same data.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{JWT_KEY, session_cookie};

/// How soon a restarted system on the embedded store must answer `/readyz` with 200.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The same on the CQL store, where the launcher also restarts a Cassandra node: its JVM
/// start and commit-log replay after `kill -9` take 20–30 s alone on 2 busy cores, so the bound
/// only guards against a hang; the figure is printed.
const READY_WITHIN_ON_CQL: Duration = Duration::from_secs(90);

pub(crate) struct Up {
    child: Option<Child>,
    base: String,
    http: reqwest::Client,
}

impl Up {
    /// Starts `ticketing up` on `data` and returns once `/readyz` answers 200, with how long it took.
    pub(crate) async fn start(data: &std::path::Path, port: u16, kafka_port: u16) -> (Self, Duration) {
        Self::start_on(data, port, kafka_port, None).await
    }

    /// As [`Up::start`]; with `cassandra_port` on the CQL store, a local Cassandra node that
    /// `ticketing up` starts under `data` itself (`TICKETING_STORE=cql`, no `SCYLLA_URI`).
    pub(crate) async fn start_on(data: &std::path::Path, port: u16, kafka_port: u16, cassandra_port: Option<u16>) -> (Self, Duration) {
        Self::start_with(data, port, kafka_port, cassandra_port, &[]).await
    }

    /// As [`Up::start_on`], with more environment variables.
    pub(crate) async fn start_with(
        data: &std::path::Path,
        port: u16,
        kafka_port: u16,
        cassandra_port: Option<u16>,
        env: &[(&str, &str)],
    ) -> (Self, Duration) {
        let started = Instant::now();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.join("up.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
        match cassandra_port {
            Some(cql) => command.env("TICKETING_STORE", "cql").env("TICKETING_CASSANDRA_PORT", cql.to_string()),
            None => command.env("TICKETING_STORE", "embedded"),
        };
        let child = command
            .arg("up")
            .env("TICKETING_ADDR", format!("127.0.0.1:{port}"))
            .env("TICKETING_DATA_DIR", data)
            .env("TICKETING_KAFKA_PORT", kafka_port.to_string())
            .env("KAFKA_TOPIC_PARTITIONS", "3")
            .env("JWT_KEY", JWT_KEY)
            .env("RUST_LOG", "info")
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .env_remove("SCHEMA_REGISTRY_URL")
            .env_remove("SCYLLA_URI")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let up = Self {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
        };
        // A first start also formats the broker's storage (and creates Cassandra's system
        // keyspaces); allow it more than a restart.
        let limit = Duration::from_secs(180);
        loop {
            if let Ok(reply) = up.http.get(format!("{}/readyz", up.base)).send().await
                && reply.status() == StatusCode::OK
            {
                return (up, started.elapsed());
            }
            assert!(started.elapsed() < limit, "not ready within {limit:?}; see {}", data.join("up.log").display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<serde_json::Value>, headers: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
        self.send_as("alice", method, path, body, headers).await
    }

    /// As [`Up::send`], signed in as `user`.
    pub(crate) async fn send_as(&self, user: &str, method: Method, path: &str, body: Option<serde_json::Value>, headers: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header("cookie", session_cookie(user));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.expect("answered");
        let status = reply.status();
        (status, reply.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The public base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Waits until the launcher has exited by itself (it aborted at a failpoint).
    pub(crate) async fn exited(mut self) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "ticketing up is still running");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL the launcher; its broker's JVM dies with it (the launcher's watchdog), as with
    /// `kill -9` of every process.
    pub(crate) fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, as a service manager stops it; waits for the exit.
    pub(crate) async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        Command::new("kill").arg(child.id().to_string()).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "ticketing up did not stop within 60 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "ticketing up exited with {status}");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Creates `n` tickets and edits each once; returns (id, version, title) of every write the
/// API acknowledged.
async fn write_tickets(up: &Up, round: &str, n: usize) -> Vec<(String, i64, String)> {
    let mut acknowledged = Vec::new();
    for i in 0..n {
        let (status, created) = up.send(Method::POST, "/api/tickets", Some(json!({"title": format!("{round} {i}"), "price": 10})), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        let title = format!("{round} {i} edited");
        let (status, updated) =
            up.send(Method::PUT, &format!("/api/tickets/{id}"), Some(json!({"title": title, "price": 11})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        acknowledged.push((id, updated["version"].as_i64().unwrap(), title));
    }
    acknowledged
}

async fn assert_all_there(up: &Up, acknowledged: &[(String, i64, String)]) {
    for (id, version, title) in acknowledged {
        let (status, ticket) = up.send(Method::GET, &format!("/api/tickets/{id}"), None, &[]).await;
        assert_eq!(status, StatusCode::OK, "acknowledged ticket {id} is gone: {ticket}");
        assert_eq!((ticket["version"].as_i64().unwrap(), ticket["title"].as_str().unwrap()), (*version, title.as_str()));
    }
    // The command side rebuilt its state from the log: versions go on where they were.
    let (id, version, _) = acknowledged.last().unwrap();
    let expected = version.to_string();
    let (status, updated) = up
        .send(Method::PUT, &format!("/api/tickets/{id}"), Some(json!({"title": "after restart", "price": 12})), &[("if-match", &expected)])
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_clean_stop_and_a_kill_9_and_the_system_is_ready_within_30_s() {
    survives_restarts(false).await;
}

/// The same with `TICKETING_STORE=cql`: the launcher also starts (and on `kill -9` loses) its
/// Cassandra node, whose commit log keeps the read models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_cql_store_every_acknowledged_write_survives_a_clean_stop_and_a_kill_9() {
    survives_restarts(true).await;
}

async fn survives_restarts(cql: bool) {
    let data = tempfile::tempdir().unwrap();
    let port = platform::local::free_port().unwrap();
    let kafka_port = platform::local::free_port().unwrap();
    let cassandra_port = cql.then(|| platform::local::free_port().unwrap());

    let (up, _) = Up::start_on(data.path(), port, kafka_port, cassandra_port).await;
    let mut acknowledged = write_tickets(&up, "first", 10).await;
    up.stop().await;

    let ready_within = if cql { READY_WITHIN_ON_CQL } else { READY_WITHIN };
    let (up, ready_after_stop) = Up::start_on(data.path(), port, kafka_port, cassandra_port).await;
    assert!(ready_after_stop < ready_within, "ready {ready_after_stop:?} after a clean stop");
    assert_all_there(&up, &acknowledged).await;
    acknowledged.last_mut().unwrap().1 += 1;
    acknowledged.last_mut().unwrap().2 = "after restart".into();
    acknowledged.extend(write_tickets(&up, "second", 10).await);
    up.kill();

    let (up, ready_after_kill) = Up::start_on(data.path(), port, kafka_port, cassandra_port).await;
    assert!(ready_after_kill < ready_within, "ready {ready_after_kill:?} after kill -9");
    assert_all_there(&up, &acknowledged).await;
    eprintln!("ready again {ready_after_stop:?} after a clean stop, {ready_after_kill:?} after kill -9 (cql: {cql})");
    up.stop().await;
}
