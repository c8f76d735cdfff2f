//! The local infrastructure of a single machine: an Apache Kafka broker and an Apache Cassandra
//! node run as child JVMs from the jars `scripts/install-infra.sh` gathers from Maven Central.
//! `ticketing up`, the test harness and the bench all start them through this module.

mod cassandra;
mod kafka;
mod process;
pub mod shared;

pub use cassandra::LocalCassandra;
pub use kafka::LocalKafka;

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::{Context, bail};

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
