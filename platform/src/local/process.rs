//! A JVM child process: started with its output in a log file, watched so that it never
//! outlives the process that started it, stopped with SIGTERM then SIGKILL.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running JVM.
pub(super) struct JavaProcess {
    name: &'static str,
    child: Option<Child>,
    /// Kills the JVM when this process goes away, however it goes: it waits for EOF on a pipe
    /// whose writing end only this process holds. Statics shared by tests are never dropped,
    /// and `kill -9` of a launcher runs no destructor.
    watchdog: Option<(Child, ChildStdin)>,
    log: PathBuf,
}

/// The `java` to run: `$JAVA_HOME/bin/java` when set, else the one on `PATH`.
fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|java| java.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

impl JavaProcess {
    /// Runs `java <args>` in `dir`, its output appended to `log`.
    pub(super) fn spawn(name: &'static str, args: Vec<OsString>, dir: &Path, log: PathBuf) -> anyhow::Result<Self> {
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("Failed to open {}", log.display()))?;
        let child = Command::new(java())
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("Failed to start {name}: is Java 17+ installed (JAVA_HOME or PATH)?"))?;
        let pid = child.id().to_string();
        let mut watchdog = Command::new("sh")
            .args(["-c", r#"cat >/dev/null; kill -9 "$0" 2>/dev/null"#, &pid])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("Failed to start the process watchdog")?;
        let pipe = watchdog.stdin.take().context("the watchdog has a stdin")?;
        Ok(Self { name, child: Some(child), watchdog: Some((watchdog, pipe)), log })
    }

    /// Process id, while it runs.
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails when the process has exited, pointing at its log.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("{} exited with {status}; its last lines:\n{}", self.name, tail(&self.log, 15));
        }
        Ok(())
    }

    /// Waits until `addr` accepts connections, failing early if the process dies.
    async fn wait_listening(&mut self, addr: std::net::SocketAddr, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            self.check_running()?;
            if start.elapsed() > limit {
                bail!("{} did not listen on {addr} within {limit:?}; see {}", self.name, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `addr` accepts connections and then until `probe` succeeds (the service
    /// answers its own protocol), failing early if the process dies and after `limit`.
    pub(super) async fn wait_ready<F, Fut>(&mut self, addr: std::net::SocketAddr, limit: Duration, mut probe: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let start = Instant::now();
        self.wait_listening(addr, limit).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), probe()).await {
                Ok(Ok(())) => {
                    tracing::debug!(message = "A local service is ready.", service = self.name, %addr, elapsed = ?start.elapsed());
                    return Ok(());
                }
                Ok(Err(error)) => tracing::debug!(message = "A local service is not ready yet.", service = self.name, %error),
                Err(_) => tracing::debug!(message = "A local service did not answer within 10 s.", service = self.name),
            }
            self.check_running()?;
            if start.elapsed() > limit {
                bail!("{} on {addr} did not become ready within {limit:?}; see {}", self.name, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub(super) async fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        self.disarm();
        let Some(mut child) = self.child.take() else { return Ok(()) };
        signal(child.id(), "TERM");
        let start = Instant::now();
        while child.try_wait()?.is_none() {
            if start.elapsed() > grace {
                tracing::warn!(message = "A local service did not stop in time; killing it.", service = self.name, ?grace);
                child.kill().context("Failed to kill")?;
                child.wait()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// SIGKILL, as a crash would.
    pub(super) fn kill(&mut self) {
        self.disarm();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn disarm(&mut self) {
        if let Some((mut watchdog, pipe)) = self.watchdog.take() {
            let _ = watchdog.kill();
            drop(pipe);
            let _ = watchdog.wait();
        }
    }
}

impl Drop for JavaProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `java <args>` to completion (tools such as Kafka's storage formatter).
pub(super) async fn run_java(name: &str, args: Vec<OsString>, dir: &Path) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(java())
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("Failed to run {name}: is Java 17+ installed (JAVA_HOME or PATH)?"))?;
    if !output.status.success() {
        bail!(
            "{name} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
