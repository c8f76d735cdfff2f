//! A local Tansu broker run as a child process: what `ticketing up` and the tests use when no
//! external Kafka is configured.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A running Tansu broker whose log is stored in SQLite under `data_dir`.
///
/// The process is killed when the value is dropped; call [`LocalBroker::stop`] for a clean stop.
pub struct LocalBroker {
    child: Option<Child>,
    addr: SocketAddr,
    data_dir: PathBuf,
}

impl LocalBroker {
    /// Starts Tansu on `127.0.0.1:port` (0 picks a free port) with its log at
    /// `<data_dir>/tansu.db`, and waits until it accepts connections.
    pub async fn start(data_dir: &Path, port: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("Failed to create {}", data_dir.display()))?;
        let port = if port == 0 { free_port()? } else { port };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let url = format!("tcp://{addr}");
        let binary = tansu_binary()?;
        let log = std::fs::File::create(data_dir.join("tansu.log"))
            .context("Failed to create the broker log file")?;
        // Tansu resolves the SQLite path against its working directory, so run it in data_dir.
        let child = Command::new(&binary)
            .current_dir(data_dir)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("Failed to start {}", binary.display()))?;
        let mut broker = Self { child: Some(child), addr, data_dir: data_dir.to_path_buf() };
        broker.wait_until_listening(Duration::from_secs(20)).await?;
        let db = data_dir.join("tansu.db");
        tokio::task::spawn_blocking(move || index_record_headers(&db))
            .await
            .context("The header index task failed")??;
        Ok(broker)
    }

    /// `host:port` to give clients as bootstrap servers.
    pub fn bootstrap_servers(&self) -> String {
        self.addr.to_string()
    }

    /// Process id of the broker, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Where the broker keeps its log.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the broker with SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                child.kill().await.context("Failed to kill the broker")?;
            }
        }
        Ok(())
    }

    async fn wait_until_listening(&mut self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "The broker exited with {status}; see {}",
                    self.data_dir.join("tansu.log").display()
                );
            }
            if start.elapsed() > limit {
                bail!("The broker did not listen on {} within {limit:?}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Adds the index Tansu 0.6's SQLite schema lacks on `header (topition, offset_id)`.
///
/// Without it the broker scans every header it holds for each record it serves, so reading
/// records with headers (all of ours: `event_type`, trace context) slows down as the log grows,
/// until fetches outlast the client's socket timeout and consumers stall (30,000 records were
/// enough). SQLite uses the index for Tansu's own queries; Tansu never drops it.
fn index_record_headers(db: &Path) -> anyhow::Result<()> {
    let connection = rusqlite::Connection::open(db).with_context(|| format!("Failed to open {}", db.display()))?;
    connection.busy_timeout(Duration::from_secs(10))?;
    let started = Instant::now();
    // Tansu creates its schema as it starts; give it a moment on a fresh data dir.
    loop {
        match connection.execute("CREATE INDEX IF NOT EXISTS header_record ON header (topition, offset_id)", []) {
            Ok(_) => return Ok(()),
            Err(error) if error.to_string().contains("no such table") && started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => return Err(error).with_context(|| format!("Failed to index the broker's record headers in {}", db.display())),
        }
    }
}

/// Finds the Tansu binary: `TANSU_BIN`, then `~/.cargo/bin/tansu`, then `PATH`.
pub fn tansu_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Ok(home) = home {
        let candidate = home.join("bin").join("tansu");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join("tansu");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!("The Tansu broker is not installed; run scripts/install-broker.sh")
}

/// A port that was free a moment ago on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("Failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}
