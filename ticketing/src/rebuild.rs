//! `ticketing rebuild <read-model>`: replay the log into a fresh namespace, then switch reads;
//! or, with `--as-of`, into a named snapshot namespace the query API serves read-only.
//! `ticketing audit <read-model>`: replay into a scratch namespace and compare with the live one.

use std::sync::Arc;
use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use platform::audit::AuditReport;
use platform::log::{EndOffsets, LogConfig};
use platform::projection::{Projection, ReadModels, RebuildReport, ReplayWrites, Snapshot, rebuild, replay_into};
use platform::store::validate_name;
use projectors::orders::OrderProjector;
use projectors::tickets::TicketProjector;

use crate::app::{Codecs, LocalServices, connect_log, open_store, tool_registry};
use crate::settings::Settings;

/// The read models `rebuild` and `audit` know.
pub const READ_MODELS: &[&str] = &["tickets", "orders"];

/// Exit status of `ticketing audit` when the read model differs from its replay.
pub const AUDIT_DIFFERS_EXIT_CODE: i32 = 3;

/// `ticketing rebuild`'s options.
#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The read model (tickets, orders).
    pub read_model: String,
    /// Rebuild as of this time (RFC 3339): every event written before it, into a snapshot
    /// namespace that the query API serves to requests naming it in `X-Read-Namespace`. Reads
    /// of the live read model are not switched.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
    /// The snapshot namespace's name ([a-z0-9_], at most 40 characters). Default:
    /// `<read-model>_asof_<time>`.
    #[arg(long, value_name = "NAME", requires = "as_of")]
    pub into: Option<String>,
}

/// `ticketing audit`'s options.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The read model (tickets, orders).
    pub read_model: String,
    /// How many differing rows to show.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub show: usize,
    /// Keeps the scratch namespace the log was replayed into, to look at afterwards.
    #[arg(long)]
    pub keep_scratch: bool,
}

/// What the commands need: the log, the registry, the store and the projection.
struct Replay {
    local: LocalServices,
    log: LogConfig,
    registry_server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    read_models: ReadModels,
    projection: Arc<dyn Projection>,
}

impl Replay {
    async fn open(settings: &Settings, read_model: &str) -> anyhow::Result<Self> {
        if !READ_MODELS.contains(&read_model) {
            bail!("Unknown read model {read_model:?}; known: {}", READ_MODELS.join(", "));
        }
        let mut local = LocalServices::default();
        let log = connect_log(settings, &mut local).await?;
        let (registry_url, registry_server) = tool_registry(settings, &log).await?;
        let store = open_store(settings, &mut local).await?;
        let codecs = Codecs::new(&log, &registry_url)?;
        let projection: Arc<dyn Projection> = match read_model {
            "orders" => Arc::new(OrderProjector::new(codecs.orders.clone())),
            _ => Arc::new(TicketProjector::new(codecs.tickets.clone())),
        };
        Ok(Self { local, log, registry_server, read_models: ReadModels::new(store), projection })
    }

    async fn close(self) -> anyhow::Result<()> {
        if let Some(server) = self.registry_server {
            server.abort();
        }
        self.local.stop().await
    }
}

fn progress_bar(message: String) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// Rebuilds a read model, drawing a progress bar on stderr.
pub async fn run(settings: &Settings, args: RebuildArgs) -> anyhow::Result<RebuildReport> {
    let as_of = args
        .as_of
        .as_deref()
        .map(|at| {
            chrono::DateTime::parse_from_rfc3339(at)
                .with_context(|| format!("--as-of {at:?} is not an RFC 3339 time (2026-12-01T10:00:00Z)"))
        })
        .transpose()?;
    if let Some(name) = &args.into {
        validate_name(name).map_err(|_| anyhow::anyhow!("--into {name:?}: use [a-z0-9_], 1 to 40 characters"))?;
    }
    let replay = Replay::open(settings, &args.read_model).await?;
    let projection = &replay.projection;
    let bar = progress_bar(format!("rebuilding {}", projection.name()));
    let mut on_progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let started = Instant::now();
    let report = match as_of {
        None => rebuild(&replay.log, projection, &replay.read_models, on_progress).await,
        Some(as_of) => {
            let namespace = args
                .into
                .clone()
                .unwrap_or_else(|| format!("{}_asof_{}", projection.name(), as_of.to_utc().format("%Y%m%d%H%M%S")));
            snapshot(&replay, &namespace, as_of.timestamp_millis(), &mut on_progress).await
        }
    };
    bar.finish();
    let closed = replay.close().await;
    let report = report?;
    closed?;
    match &args.as_of {
        None => eprintln!(
            "Rebuilt {} into namespace {}: {} events replayed, {} applied, in {:.1?}; reads now use it.",
            args.read_model, report.namespace, report.records, report.changed, started.elapsed()
        ),
        Some(at) => eprintln!(
            "Rebuilt {} as of {at} into namespace {}: {} events replayed, {} applied, in {:.1?}; read it with the header X-Read-Namespace: {}",
            args.read_model, report.namespace, report.records, report.changed, started.elapsed(), report.namespace
        ),
    }
    Ok(report)
}

/// Replays every record written before `as_of` into `namespace` and registers it as a snapshot.
async fn snapshot(
    replay: &Replay,
    namespace: &str,
    as_of: i64,
    on_progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<RebuildReport> {
    let projection = &replay.projection;
    if replay.read_models.snapshot(namespace).await?.is_some() || replay.read_models.current(projection.name()).await? == namespace {
        bail!("Namespace {namespace} is taken; name another with --into");
    }
    // An interrupted snapshot, an audit's kept scratch or a read model's earlier namespace: a
    // replay on top of its rows would mix them into the snapshot.
    let first = replay.read_models.store().scan_namespace(namespace, None, 1).await?;
    // A page may come back without cells and with more to read (a store that drops deleted
    // cells after fetching them).
    if !first.cells.is_empty() || first.next.is_some() {
        bail!("Namespace {namespace} already holds rows (an interrupted snapshot, a kept audit scratch or an earlier namespace of a read model); name another with --into");
    }
    let until = EndOffsets::new(&replay.log)?.offsets_at_time(projection.topic(), as_of).await?;
    let mut report = RebuildReport { namespace: namespace.to_string(), records: 0, changed: 0 };
    // A new snapshot namespace: the replay's alone.
    let writes = ReplayWrites::Behind;
    replay_into(&replay.log, projection, &replay.read_models, namespace, writes, &BTreeMap::new(), Some(&until), &mut report, on_progress)
        .await?;
    let snapshot = Snapshot { read_model: projection.name().to_string(), as_of };
    replay.read_models.register_snapshot(namespace, &snapshot).await?;
    Ok(report)
}

/// Audits a read model; prints the report and returns it.
pub async fn audit(settings: &Settings, args: AuditArgs) -> anyhow::Result<AuditReport> {
    let replay = Replay::open(settings, &args.read_model).await?;
    let bar = progress_bar(format!("replaying {} for the audit", args.read_model));
    let mut on_progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let started = Instant::now();
    let report = platform::audit::audit(
        &replay.log,
        &replay.projection,
        &replay.read_models,
        args.show,
        args.keep_scratch,
        &mut on_progress,
    )
    .await;
    bar.finish_and_clear();
    let closed = replay.close().await;
    let report = report?;
    closed?;
    println!(
        "Audit of {} (namespace {}): {} events replayed into {}{}, {} live rows, {} replayed rows, {} differences, in {:.1?}.",
        report.read_model,
        report.live,
        report.records,
        report.scratch,
        if args.keep_scratch { " (kept)" } else { " (dropped)" },
        report.live_rows,
        report.replayed_rows,
        report.difference_count,
        started.elapsed(),
    );
    for difference in &report.differences {
        let (table, partition, clustering) = &difference.key;
        println!("  {table} {partition:?} {clustering:?}:");
        println!("    live:     {}", difference.live.as_deref().unwrap_or("(missing)"));
        println!("    replayed: {}", difference.replayed.as_deref().unwrap_or("(not in the log)"));
    }
    Ok(report)
}
