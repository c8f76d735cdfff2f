//! The local infrastructure of a single machine: an Apache Kafka broker and an Apache Cassandra
//! node run as child JVMs from the jars `scripts/install-infra.sh` gathers from Maven Central.
//! `ticketing up`, the test harness and the bench all start them through this module.

mod cassandra;
mod kafka;
mod process;
pub mod shared;

pub use kafka::{SCRAM_MECHANISM, ScramUser};

use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

/// A JVM service this process started: [`LocalKafka`] or [`LocalCassandra`].
///
/// Killed when dropped (and when the process that started it dies); [`LocalNode::stop`]
/// stops it cleanly.
pub struct LocalNode<K: NodeKind> {
    process: process::JavaProcess,
    addr: SocketAddr,
    kind: PhantomData<K>,
}

/// What kind of service a [`LocalNode`] is.
pub trait NodeKind {
    /// Its name in messages; its output goes to `<data dir>/<name in lower case>.log`.
    const NAME: &'static str;
    /// Which jars of the install step it runs (`<infra home>/<component>/lib`).
    const COMPONENT: &'static str;
    /// How long a start may take.
    const START_LIMIT: Duration;
    /// How long a clean stop may take before SIGKILL.
    const STOP_GRACE: Duration;
}

/// An Apache Kafka broker (KRaft, broker and controller in one JVM).
pub enum Kafka {}
/// An Apache Cassandra node.
pub enum Cassandra {}

impl NodeKind for Kafka {
    const NAME: &'static str = "Kafka";
    const COMPONENT: &'static str = "kafka";
    // A restart after `kill -9` recovers its log segments first.
    const START_LIMIT: Duration = Duration::from_secs(120);
    // One node moves no leadership anywhere; it flushes and closes its log.
    const STOP_GRACE: Duration = Duration::from_secs(30);
}

impl NodeKind for Cassandra {
    const NAME: &'static str = "Cassandra";
    const COMPONENT: &'static str = "cassandra";
    // A first start creates the system keyspaces; a restart replays its commit log.
    const START_LIMIT: Duration = Duration::from_secs(180);
    // A clean stop drains and flushes memtables.
    const STOP_GRACE: Duration = Duration::from_secs(30);
}

/// Where a node is about to start: its data directory (absolute, created), the classpath of
/// its jars and the port its clients will use.
struct Site {
    data_dir: PathBuf,
    classpath: String,
    port: u16,
}

/// A single-node Kafka broker with its log under its data directory.
pub type LocalKafka = LocalNode<Kafka>;
/// A single Cassandra node with its data under its data directory.
pub type LocalCassandra = LocalNode<Cassandra>;

impl<K: NodeKind> LocalNode<K> {
    /// Prepares a start in `data_dir` on `127.0.0.1:port` (0 picks a free port).
    async fn site(data_dir: &Path, port: u16) -> anyhow::Result<Site> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("Failed to create {}", data_dir.display()))?;
        Ok(Site {
            data_dir: std::path::absolute(data_dir)?,
            classpath: classpath(K::COMPONENT)?,
            port: port_or_free(port).await?,
        })
    }

    /// Runs `java <args>` at `site` and waits until its port accepts connections and `probe`
    /// succeeds (the node answers its own protocol).
    async fn launch<F, Fut>(site: Site, args: Vec<std::ffi::OsString>, probe: F) -> anyhow::Result<Self>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let log = site.data_dir.join(format!("{}.log", K::NAME.to_ascii_lowercase()));
        let process = process::JavaProcess::spawn(K::NAME, args, &site.data_dir, log)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], site.port));
        let mut node = Self { process, addr, kind: PhantomData };
        node.process.wait_ready(addr, K::START_LIMIT, probe).await?;
        Ok(node)
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Process id of the JVM, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stops the service cleanly (SIGTERM; SIGKILL if it takes more than 30 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.process.stop(K::STOP_GRACE).await
    }

    /// Kills the service with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        self.process.kill();
    }
}

/// Where `scripts/install-infra.sh` keeps the jars: `TICKETING_INFRA_HOME`, else
/// `$XDG_CACHE_HOME/ticketing/infra`, else `~/.cache/ticketing/infra`.
pub fn infra_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("TICKETING_INFRA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(cache) => PathBuf::from(cache),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(cache.join("ticketing").join("infra"))
}

/// The classpath of an installed component (`kafka`, `cassandra`): every jar of its `lib/`.
fn classpath(component: &str) -> anyhow::Result<String> {
    let home = infra_home()?;
    let lib = home.join(component).join("lib");
    if !home.join(component).join("installed").exists() || !lib.is_dir() {
        bail!(
            "The {component} jars are not installed in {}; run scripts/install-infra.sh (needs Java 17+ and Maven)",
            lib.display()
        );
    }
    Ok(format!("{}/*", lib.display()))
}

/// A port that was free a moment ago on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("Failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `port`, or a free one when it is 0. A given port still held by a process that is going
/// away (a killed JVM a moment ago) is waited for, up to 15 s.
async fn port_or_free(port: u16) -> anyhow::Result<u16> {
    if port == 0 {
        return free_port();
    }
    let start = std::time::Instant::now();
    loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => return Ok(port),
            Err(error) if start.elapsed() > std::time::Duration::from_secs(15) => {
                bail!("Port {port} on 127.0.0.1 is taken ({error}): is another broker or node running there?")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// A port this data directory used before (kept in `<dir>/<name>.port`), so that a restart on
/// the same data finds the node where its own metadata says it is; a free one the first time.
fn remembered_port(dir: &std::path::Path, name: &str) -> anyhow::Result<u16> {
    let path = dir.join(format!("{name}.port"));
    if let Some(port) = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()) {
        return Ok(port);
    }
    let port = free_port()?;
    std::fs::write(&path, port.to_string()).with_context(|| format!("Failed to write {}", path.display()))?;
    Ok(port)
}
