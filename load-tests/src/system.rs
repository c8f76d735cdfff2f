//! The marketplace under test, run from the `ticketing` binary as child processes on loopback
//! ports: one process per component (as the Helm chart deploys it), or `ticketing up`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use platform::local::free_port;
use platform::log::LogConfig;
use tokio::process::{Child, Command};

use crate::client::{RouteGroup, Targets};

/// How the components are spread over processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Topology {
    /// One process per component, as in Kubernetes; the projectors and the query API share one
    /// process because the embedded store is open in one process at a time.
    Split,
    /// Everything in one `ticketing up` process.
    Single,
}

/// A component process of the topology.
#[derive(Debug, Clone)]
struct ComponentSpec {
    name: &'static str,
    args: Vec<&'static str>,
    serves: &'static [RouteGroup],
}

impl Topology {
    fn components(self) -> Vec<ComponentSpec> {
        let spec = |name, args: &[&'static str], serves| ComponentSpec { name, args: args.to_vec(), serves };
        match self {
            Topology::Single => vec![spec("ticketing-up", &["up"], &[])],
            Topology::Split => vec![
                spec("schema-registry", &["serve", "schema-registry"], &[]),
                spec("users", &["serve", "users"], &[RouteGroup::Users]),
                spec("tickets", &["serve", "tickets"], &[RouteGroup::Tickets]),
                spec("orders", &["serve", "orders"], &[RouteGroup::Orders]),
                spec("payments", &["serve", "payments"], &[RouteGroup::Payments]),
                spec("expiration", &["serve", "expiration"], &[]),
                spec(
                    "read-side",
                    &["serve", "projector-tickets", "projector-orders", "query-api"],
                    &[RouteGroup::Query],
                ),
            ],
        }
    }

    /// The process whose store holds the read models (stopped for a rebuild).
    pub fn read_side(self) -> &'static str {
        match self {
            Topology::Single => "ticketing-up",
            Topology::Split => "read-side",
        }
    }
}

struct Running {
    spec: ComponentSpec,
    port: u16,
    child: Option<Child>,
}

/// The marketplace's processes.
pub struct System {
    binary: PathBuf,
    work_dir: PathBuf,
    env: Vec<(String, String)>,
    topology: Topology,
    components: Vec<Running>,
}

/// Resident memory of one process, in MiB.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessMemory {
    /// Component name.
    pub name: String,
    /// Median over the samples.
    pub median_mib: f64,
    /// Highest sample.
    pub max_mib: f64,
}

impl System {
    /// Starts the topology's processes from `binary` against the log of `log` (brokers,
    /// namespace, partitions, fetch wait) and the read store that `store_env` names, with
    /// state and logs under `work_dir`, and waits until each answers `/readyz`.
    pub async fn start(
        binary: &Path,
        topology: Topology,
        log: &LogConfig,
        store_env: &[(String, String)],
        work_dir: &Path,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(binary.is_file(), "{} not found: build it with `cargo build --release -p ticketing`", binary.display());
        let jwt_key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let mut env = vec![
            ("KAFKA_BOOTSTRAP_SERVERS".to_string(), log.bootstrap_servers.clone()),
            ("KAFKA_TOPIC_PARTITIONS".to_string(), log.partitions.to_string()),
            ("KAFKA_FETCH_WAIT_MAX_MS".to_string(), log.fetch_wait_ms.to_string()),
            ("TICKETING_NAMESPACE".to_string(), log.namespace.clone()),
            ("JWT_KEY".to_string(), jwt_key),
            ("TICKETING_MASTER_KEY".to_string(), platform::vault::MasterKey::generate_hex()),
            ("TICKETING_DATA_DIR".to_string(), work_dir.join("state").display().to_string()),
            ("RUST_LOG".to_string(), std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into())),
            // A read side catching up with a backlog is still ready to serve.
            ("READY_MAX_LAG".to_string(), i64::MAX.to_string()),
            // Every simulated user signs up and in from this one address.
            ("SIGNIN_LIMIT_PER_ADDRESS".to_string(), "off".to_string()),
        ];
        env.extend(store_env.iter().cloned());
        let mut components: Vec<Running> = topology
            .components()
            .into_iter()
            .map(|spec| Ok(Running { spec, port: free_port()?, child: None }))
            .collect::<anyhow::Result<_>>()?;
        if topology == Topology::Split {
            let registry = components.iter().find(|c| c.spec.name == "schema-registry").expect("split has a registry");
            env.push(("SCHEMA_REGISTRY_URL".to_string(), format!("http://127.0.0.1:{}", registry.port)));
        }
        std::fs::create_dir_all(work_dir.join("logs"))?;
        let mut system = Self { binary: binary.to_path_buf(), work_dir: work_dir.to_path_buf(), env, topology, components: Vec::new() };

        // Topics, the registry topic and the store's schema first, as the Helm hook does.
        let status = system.command(&["init"], "init")?.status().await?;
        anyhow::ensure!(status.success(), "`ticketing init` failed; see {}", system.log_path("init").display());

        for running in &mut components {
            let child = system.command(&running.spec.args, running.spec.name)?.env("TICKETING_ADDR", format!("127.0.0.1:{}", running.port)).spawn()?;
            running.child = Some(child);
            // The registry must answer before the others register their schemas.
            if running.spec.name == "schema-registry" {
                wait_ready(running, Duration::from_secs(60), &system.log_path(running.spec.name)).await?;
            }
        }
        for running in &mut components {
            wait_ready(running, Duration::from_secs(90), &system.log_path(running.spec.name)).await?;
        }
        system.components = components;
        Ok(system)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.work_dir.join("logs").join(format!("{name}.log"))
    }

    fn command(&self, args: &[&str], name: &str) -> anyhow::Result<Command> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(name))?;
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if name == "schema-registry" {
            // The process that serves the bundled registry is the one told of no other.
            command.env_remove("SCHEMA_REGISTRY_URL");
        }
        Ok(command)
    }

    /// The route table: each group to the process serving it.
    pub fn targets(&self) -> Targets {
        let first = &self.components[0];
        let mut targets = Targets::single(&format!("http://127.0.0.1:{}", first.port));
        for running in &self.components {
            for group in running.spec.serves {
                targets = targets.route(*group, &format!("http://127.0.0.1:{}", running.port));
            }
        }
        targets
    }

    /// Base URL of a component's own port (`/metrics`, `/readyz`).
    pub fn url(&self, name: &str) -> Option<String> {
        self.components.iter().find(|c| c.spec.name == name).map(|c| format!("http://127.0.0.1:{}", c.port))
    }

    /// Base URL of the schema registry.
    pub fn registry_url(&self) -> String {
        self.url("schema-registry").or_else(|| self.url("ticketing-up")).expect("the topology has a registry")
    }

    /// Process ids of the running components, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.components
            .iter()
            .filter_map(|c| Some((c.spec.name.to_string(), c.child.as_ref()?.id()?)))
            .collect()
    }

    /// The topology.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// Stops one component (SIGTERM, then SIGKILL after 15 s).
    pub async fn stop_component(&mut self, name: &str) -> anyhow::Result<()> {
        let running = self.components.iter_mut().find(|c| c.spec.name == name).context("no such component")?;
        if let Some(child) = running.child.take() {
            terminate(child).await?;
        }
        Ok(())
    }

    /// Stops every component but the schema registry, so that the projector can be timed
    /// through a backlog alone.
    pub async fn stop_all_but_registry(&mut self) -> anyhow::Result<()> {
        for running in self.components.iter_mut().filter(|c| c.spec.name != "schema-registry") {
            if let Some(child) = running.child.take() {
                terminate(child).await?;
            }
        }
        Ok(())
    }

    /// Starts a stopped component again and waits until it is ready.
    pub async fn start_component(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self.components.iter().position(|c| c.spec.name == name).context("no such component")?;
        let (args, port) = (self.components[index].spec.args.clone(), self.components[index].port);
        let child = self.command(&args, name)?.env("TICKETING_ADDR", format!("127.0.0.1:{port}")).spawn()?;
        self.components[index].child = Some(child);
        let log = self.log_path(name);
        wait_ready(&mut self.components[index], Duration::from_secs(90), &log).await
    }

    /// The environment tools run with (`run_tool`'s).
    pub fn tool_env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Runs `ticketing <args>` with the components' settings, its output (progress) shown.
    pub async fn run_tool(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = Command::new(&self.binary)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "`ticketing {}` failed ({status}); see its output above", args.join(" "));
        Ok(())
    }

    /// Stops every component, the last started first.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        while let Some(mut running) = self.components.pop() {
            if let Some(child) = running.child.take() {
                terminate(child).await?;
            }
        }
        Ok(())
    }
}

async fn wait_ready(running: &mut Running, limit: Duration, log: &Path) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{}/readyz", running.port);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if let Some(child) = running.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("{} exited with {status} while starting; see {}", running.spec.name, log.display());
        }
        if started.elapsed() > limit {
            bail!("{} was not ready after {limit:?}; see {}", running.spec.name, log.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn terminate(mut child: Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    }
    if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
        child.kill().await.context("Failed to kill a component")?;
    }
    Ok(())
}

/// Resident set size of a process in MiB, from `/proc/<pid>/status`.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time a process has used so far (user + system), from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / crate::cpu::USER_HZ)
}

/// CPU used by one process over a window, in cores (1.0 = one core busy throughout).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessCpu {
    /// Component name.
    pub name: String,
    /// Average cores busy over the window.
    pub cores: f64,
}

/// Average CPU of each of `pids` over `window`.
pub async fn sample_cpu(pids: &[(String, u32)], window: Duration) -> Vec<ProcessCpu> {
    let before: Vec<Option<f64>> = pids.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
    tokio::time::sleep(window).await;
    pids.iter()
        .zip(before)
        .filter_map(|((name, pid), before)| {
            let used = cpu_seconds(*pid)? - before?;
            Some(ProcessCpu { name: name.clone(), cores: used / window.as_secs_f64() })
        })
        .collect()
}

/// Samples the resident memory of `pids` once a second until `stop` turns true.
pub async fn sample_memory(pids: Vec<(String, u32)>, mut stop: tokio::sync::watch::Receiver<bool>) -> Vec<ProcessMemory> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); pids.len()];
    loop {
        for ((_, pid), samples) in pids.iter().zip(samples.iter_mut()) {
            if let Some(mib) = rss_mib(*pid) {
                samples.push(mib);
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    pids.into_iter()
        .zip(samples)
        .map(|((name, _), mut samples)| {
            samples.sort_by(f64::total_cmp);
            let median_mib = samples.get(samples.len() / 2).copied().unwrap_or(0.0);
            let max_mib = samples.last().copied().unwrap_or(0.0);
            ProcessMemory { name, median_mib, max_mib }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_topology_routes_every_group_to_its_component() {
        let names: Vec<_> = Topology::Split.components().iter().flat_map(|c| c.serves.to_vec()).collect();
        for group in [RouteGroup::Users, RouteGroup::Tickets, RouteGroup::Orders, RouteGroup::Payments, RouteGroup::Query] {
            assert_eq!(names.iter().filter(|g| **g == group).count(), 1, "{group:?}");
        }
    }

    #[test]
    fn reads_this_process_s_cpu_time() {
        let start = cpu_seconds(std::process::id()).expect("own /proc stat");
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = cpu_seconds(std::process::id()).unwrap() - start;
        assert!(used >= 0.1, "300 ms of spinning counted as {used} s");
    }

    #[test]
    fn reads_this_process_s_resident_memory() {
        let mib = rss_mib(std::process::id()).expect("own /proc status");
        assert!(mib > 1.0 && mib < 24_000.0, "{mib}");
    }
}
