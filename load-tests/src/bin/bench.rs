//! `bench`: raw baselines and the marketplace measured in one run on one machine, with the
//! issue's targets beside the ratios. Writes `report.json` and `report.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use load_tests::backlog;
use load_tests::baseline::{self, Throughput};
use load_tests::client::ApiClient;
use load_tests::mix::{DEFAULT_MIX, Mix, Operation};
use load_tests::cpu::CpuClock;
use load_tests::report::{AnalystRound, AnalystTools, BenchReport, Machine, Saturation, target_checks};
use load_tests::run::{Schedule, run_open_model};
use load_tests::scenario::{Marketplace, saturate};
use load_tests::system::{System, Topology, sample_cpu, sample_memory};
use load_tests::{format_progress, progress_line};
use load_tests::report::StoreKind;
use platform::local::{LocalCassandra, LocalKafka};
use platform::log::{LogConfig, TopicReader};
use schemas::events::AvroEvent;
use schemas::tickets::TicketEvent;

/// Measures raw baselines and the marketplace on this machine and reports them side by side.
#[derive(Parser)]
#[command(name = "bench", version)]
struct Args {
    /// Requests per second of the mixed run.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds of the mixed run.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Mix of the mixed run.
    #[arg(long, default_value = DEFAULT_MIX)]
    mix: Mix,
    /// Ticket commands per second of the end-to-end run.
    #[arg(long, default_value_t = 1000.0)]
    command_rate: f64,
    /// Seconds of the end-to-end run.
    #[arg(long, default_value_t = 20.0)]
    command_duration: f64,
    /// Seconds of each closed-loop (highest throughput) run.
    #[arg(long, default_value_t = 15.0)]
    saturation_duration: f64,
    /// Connections of the closed-loop runs.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Ticket events appended for the projector and the replay (0 skips both).
    #[arg(long, default_value_t = 1_000_000)]
    replay_events: u64,
    /// Records of the raw produce and consume baselines.
    #[arg(long, default_value_t = 200_000)]
    baseline_records: u64,
    /// Rows of the raw store baselines (point reads: 5 times as many).
    #[arg(long, default_value_t = 500_000)]
    baseline_rows: u64,
    /// Partitions of every topic (the system's `KAFKA_TOPIC_PARTITIONS`).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// The consumers' `fetch.wait.max.ms` (the system's `KAFKA_FETCH_WAIT_MAX_MS`).
    #[arg(long, default_value_t = 500)]
    fetch_wait_ms: u32,
    /// One process per component, or everything in `ticketing up`.
    #[arg(long, value_enum, default_value_t = Topology::Split)]
    topology: Topology,
    /// The read store of the system: the embedded engine or CQL (a local Cassandra node this
    /// run starts, or the cluster at `SCYLLA_URI`).
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// The `ticketing` binary (default: next to this one).
    #[arg(long)]
    ticketing_bin: Option<PathBuf>,
    /// Where `report.json` and `report.md` go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Keep the broker log, store and component logs (under `<out>/work`) instead of a
    /// temporary directory.
    #[arg(long)]
    keep: bool,
    /// Only the backlog stages: the projector, the rebuild and the analysts' tools (with the raw
    /// consume beside them), on the embedded store; no Cassandra, HTTP or load runs.
    #[arg(long)]
    backlog_only: bool,
    /// After the run, keep the broker, registry and backlog up until Ctrl-C, and write the
    /// environment that points `ticketing` tools at them to `<out>/tools.env` (for profiling a
    /// tool by hand).
    #[arg(long)]
    hold: bool,
    /// Rounds of the analysts' tools (odd), each beside a raw consume of its own; the report
    /// takes, for each tool, the round with the median ratio (one stalled run on a shared VM
    /// swung a single round's ratio by half).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=19))]
    tool_rounds: u32,
}

fn say(line: impl AsRef<str>) {
    progress_line(&format!("bench: {}", line.as_ref()));
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.tool_rounds % 2 == 1, "--tool-rounds must be odd: the median is one round's figures");
    anyhow::ensure!(args.rate > 0.0 && args.command_rate > 0.0, "rates must be positive");
    let binary = match &args.ticketing_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("ticketing"),
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("Failed to create {}", args.out.display()))?;
    let temporary = tempfile::tempdir()?;
    let work_dir = if args.keep { args.out.join("work") } else { temporary.path().to_path_buf() };
    if args.keep {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    std::fs::create_dir_all(&work_dir)?;

    let broker = LocalKafka::start(&work_dir.join("kafka"), 0).await.context("Failed to start the Kafka broker")?;
    if args.backlog_only {
        anyhow::ensure!(args.replay_events > 0, "--backlog-only needs --replay-events above 0");
        anyhow::ensure!(args.store == StoreKind::Embedded, "--backlog-only runs on the embedded store");
        let result = backlog_only(&args, &binary, &broker, &work_dir).await;
        broker.stop().await?;
        return result;
    }
    let namespace = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let mut log = LogConfig::new(broker.bootstrap_servers(), namespace.clone());
    log.partitions = args.partitions;
    log.fetch_wait_ms = args.fetch_wait_ms;
    say(format!("broker on {}, namespace {namespace}, work dir {}", broker.bootstrap_servers(), work_dir.display()));

    // Raw baselines first, on an idle machine, as the system's ceiling.
    let raw_topic = log.topic("raw-baseline");
    say(format!("raw keyed produce: {} records …", args.baseline_records));
    let kafka_produce = baseline::kafka_produce(&log, &raw_topic, args.baseline_records, 10_000).await?;
    say(format!("  {:.0} records/s", kafka_produce.per_second));
    say("raw consume from the beginning …");
    let kafka_consume = baseline::kafka_consume(&log, &raw_topic, args.baseline_records + 1).await?;
    say(format!("  {:.0} records/s", kafka_consume.per_second));
    say(format!("raw fjall: {} writes, {} point reads …", args.baseline_rows, args.baseline_rows * 5));
    let mut stores = vec![baseline::fjall(&work_dir.join("fjall-baseline"), args.baseline_rows, args.baseline_rows * 5).await?];
    let (cql_uri, cassandra, cql_engine) = match std::env::var("SCYLLA_URI") {
        Ok(uri) => (uri.clone(), None, format!("CQL at {uri}")),
        Err(_) => {
            say("starting a Cassandra node …");
            let node = LocalCassandra::start(&work_dir.join("cassandra"), 0).await.context("Failed to start Cassandra")?;
            (node.uri(), Some(node), "Cassandra 5.0 (local node)".to_string())
        }
    };
    say(format!("raw CQL ({cql_engine}): {} writes, {} point reads …", args.baseline_rows / 5, args.baseline_rows));
    stores.push(baseline::cql(&cql_uri, &cql_engine, args.baseline_rows / 5, args.baseline_rows, 256).await?);
    for store in &stores {
        say(format!("  {}: {:.0} writes/s, {:.0} point reads/s", store.engine, store.writes.per_second, store.point_reads.per_second));
    }

    say(format!("bare HTTP (axum on loopback, fixed JSON): {} connections for {} s …", args.workers, args.saturation_duration));
    let http = baseline::http(args.workers, Duration::from_secs_f64(args.saturation_duration)).await?;
    say(format!("  {:.0} requests/s", http.per_second));

    say(format!("starting the marketplace ({:?} topology) from {} …", args.topology, binary.display()));
    let store_env: Vec<(String, String)> = match args.store {
        StoreKind::Embedded => vec![("TICKETING_STORE".into(), "embedded".into())],
        StoreKind::Cql => vec![
            ("TICKETING_STORE".into(), "cql".into()),
            ("SCYLLA_URI".into(), cql_uri.clone()),
            ("SCYLLA_KEYSPACE_PREFIX".into(), "bench".into()),
        ],
    };
    let mut system = System::start(&binary, args.topology, &log, &store_env, &work_dir).await?;
    let client = ApiClient::new(system.targets(), Duration::from_secs(10))?;
    let mut pids = system.pids();
    pids.extend(broker.pid().map(|pid| ("kafka-broker".to_string(), pid)));
    pids.extend(cassandra.as_ref().and_then(LocalCassandra::pid).map(|pid| ("cassandra-node".to_string(), pid)));

    // What the running system costs with no load, and the HTTP ceiling that leaves: the query
    // API is measured beside the system's idle consumers, not on an idle machine.
    say("CPU of each process with the system idle (5 s) …");
    let idle_cpu = sample_cpu(&pids, Duration::from_secs(5)).await;
    for p in &idle_cpu {
        say(format!("  {}: {:.2} cores", p.name, p.cores));
    }
    say(format!("bare HTTP beside the running system: {} connections for {} s …", args.workers, args.saturation_duration));
    let http_beside_system = baseline::http(args.workers, Duration::from_secs_f64(args.saturation_duration)).await?;
    say(format!("  {:.0} requests/s", http_beside_system.per_second));

    // The mixed run, with memory sampled throughout.
    let mixed_schedule = Schedule { rate: args.rate, duration: Duration::from_secs_f64(args.duration) };
    let command_schedule = Schedule { rate: args.command_rate, duration: Duration::from_secs_f64(args.command_duration) };
    let orders = mixed_schedule.arrivals() as f64 * args.mix.fraction(Operation::Order);
    let tickets = (orders * 1.2).ceil() as usize + 200;
    let marketplace = Arc::new(Marketplace::new(client.clone()));
    say(format!("seeding 100 users and {tickets} tickets …"));
    marketplace.seed(100, tickets, 16).await?;
    say(format!("mixed run: {} requests/s for {} s, mix {} …", args.rate, args.duration, args.mix));
    let (stop_sampling, sampling) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample_memory(pids, sampling));
    let mixed = run_open_model(marketplace.clone(), mixed_schedule, &args.mix, |p| progress_line(&format_progress(&p))).await;
    stop_sampling.send(true)?;
    let memory = sampler.await?;

    let command_mix: Mix = "write=1".parse()?;
    say(format!("ticket commands: {} /s for {} s, each read back with its consistency token …", args.command_rate, args.command_duration));
    let command_rate = run_open_model(marketplace.clone(), command_schedule, &command_mix, |p| progress_line(&format_progress(&p))).await;

    let saturation_duration = Duration::from_secs_f64(args.saturation_duration);
    let mut quiet = Marketplace::new(client.clone());
    quiet.measure_visibility = false;
    quiet.seed(20, 500, 16).await?;
    say(format!("highest throughput of POST /api/tickets: {} connections for {} s …", args.workers, args.saturation_duration));
    let command_saturation = saturation(&quiet, Operation::CreateTicket, args.workers, saturation_duration).await;
    say(format!("  {:.0} /s, p99 {:.1} ms", command_saturation.per_second, command_saturation.latency.p99_ms));
    say(format!("highest throughput of GET /api/tickets/:id: {} connections for {} s …", args.workers, args.saturation_duration));
    let query_saturation = saturation(&quiet, Operation::Show, args.workers, saturation_duration).await;
    say(format!("  {:.0} /s, p99 {:.1} ms", query_saturation.per_second, query_saturation.latency.p99_ms));

    let (projection, replay, analysts) = if args.replay_events > 0 {
        let (projection, replay) = projection_and_replay(&mut system, &log, args.replay_events).await?;
        let analysts = analyst_tools(&system, &log, &work_dir, args.tool_rounds).await?;
        (Some(projection), Some(replay), Some(analysts))
    } else {
        (None, None, None)
    };
    system.stop().await?;
    broker.stop().await?;
    if let Some(node) = cassandra {
        node.stop().await?;
    }

    let mut report = BenchReport {
        machine: Machine::describe(),
        topology: args.topology,
        store: args.store,
        system_store_engine: match args.store {
            StoreKind::Embedded => stores[0].engine.clone(),
            StoreKind::Cql => cql_engine.clone(),
        },
        partitions: args.partitions,
        fetch_wait_ms: args.fetch_wait_ms,
        idempotent_producers: true,
        kafka_produce,
        kafka_consume,
        stores,
        http,
        http_beside_system,
        idle_cpu,
        mixed,
        command_rate,
        command_saturation,
        query_saturation,
        projection,
        replay,
        analysts,
        memory,
        targets: Vec::new(),
    };
    report.targets = target_checks(&report);
    let markdown = report.to_markdown();
    std::fs::write(args.out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(args.out.join("report.md"), &markdown)?;
    print!("{markdown}");
    say(format!("wrote {} and {}", args.out.join("report.md").display(), args.out.join("report.json").display()));
    Ok(())
}

async fn saturation(marketplace: &Marketplace, operation: Operation, workers: usize, duration: Duration) -> Saturation {
    let (per_second, recorder) = saturate(marketplace, operation, workers, duration).await;
    let (routes, _, _) = recorder.snapshot();
    let stats = routes.get(&operation).cloned().unwrap_or_default();
    Saturation {
        route: operation.route().to_string(),
        workers,
        per_second,
        latency: stats.latencies.summary(),
        errors: stats.rejected + stats.failed + stats.transport_errors,
    }
}

/// Appends a backlog of ticket events while the read side is stopped, times the live
/// projector catching up with it, then times `ticketing rebuild tickets` over the whole topic.
async fn projection_and_replay(system: &mut System, log: &LogConfig, events: u64) -> anyhow::Result<(Throughput, Throughput)> {
    say(format!("encoding {events} ticket events …"));
    let encoded = backlog::encode_ticket_events(log, &system.registry_url(), events, |n| {
        if n > 0 {
            say(format!("  encoded {n}"));
        }
    })
    .await?;
    let read_side = system.topology().read_side();
    // Nothing tails the topic meanwhile: the command services would replay the backlog while
    // the projector is timed.
    system.stop_all_but_registry().await?;
    say(format!("appending {events} events to {} with the components stopped …", log.topic(TicketEvent::TOPIC)));
    let appended = backlog::append(log, &encoded, |n| say(format!("  appended {n}"))).await?;
    drop(encoded);
    say(format!("  {:.0} events/s", events as f64 / appended.as_secs_f64()));

    say("starting the read side; timing the tickets projector through the backlog …");
    let started = Instant::now();
    system.start_component(read_side).await?;
    let metrics_url = format!("{}/metrics", system.url(read_side).context("read side has a port")?);
    let http = reqwest::Client::new();
    let mut first: Option<(Instant, u64)> = None;
    let mut last_say = Instant::now();
    let projection = loop {
        let text = http.get(&metrics_url).send().await?.text().await?;
        let applied = projected(&text, "tickets");
        let now = Instant::now();
        if first.is_none() && applied > 0 {
            first = Some((now, applied));
        }
        if applied >= events {
            let (since, base) = first.unwrap_or((started, 0));
            break Throughput::new(applied - base, now - since, None);
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "the projector did not catch up in 30 minutes");
        if last_say.elapsed() >= Duration::from_secs(5) {
            last_say = now;
            say(format!("  projected {applied} of {events}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    say(format!("  {:.0} events/s", projection.per_second));

    system.stop_component(read_side).await?;
    let total: i64 = TopicReader::from_beginning(log, &log.topic(TicketEvent::TOPIC))?.end_offsets().values().sum();
    say(format!("ticketing rebuild tickets over {total} events …"));
    settle().await;
    let started = Instant::now();
    let cpu = CpuClock::start();
    system.run_tool(&["rebuild", "tickets"]).await?;
    let replay = Throughput::new(total as u64, started.elapsed(), None).with_cpu(cpu.and_then(|c| c.used()));
    say(format!("  {}", per_event(&replay)));
    Ok((projection, replay))
}

/// Times the analysts' tools over the backlog (the components stopped) in `rounds` rounds,
/// each beside a raw consume of the same topic.
async fn analyst_tools(system: &System, log: &LogConfig, work_dir: &std::path::Path, rounds: u32) -> anyhow::Result<AnalystTools> {
    let mut measured = Vec::new();
    for round in 1..=rounds {
        say(format!("analysts' tools, round {round} of {rounds}"));
        let tools = analyst_tools_once(system, log, work_dir).await?;
        for beside in tools.tools() {
            say(format!("  round {round}: {} {:.1}% of raw consume ({:.0}/s)", beside.tool, 100.0 * beside.ratio(), beside.raw_consume.per_second));
        }
        measured.push(tools);
    }
    // As many cells as the audited read model holds: a ticket's row and its listing.
    let cells = 2 * measured.first().map_or(0, |r| r.audit.operations) / backlog::EVENTS_PER_TICKET;
    settle().await;
    let floor = baseline::fjall_audit_floor(&work_dir.join("audit-floor"), cells).await?;
    let core_seconds = floor.cpu.map_or(f64::NAN, |cpu| cpu.core_seconds);
    say(format!("fjall alone writing {cells} cells and reading them twice: {:.2} s, the machine {core_seconds:.2} core-s", floor.seconds));
    Ok(AnalystTools { rounds: measured, audit_store_floor: Some(floor) })
}

/// One round of [`analyst_tools`].
async fn analyst_tools_once(system: &System, log: &LogConfig, work_dir: &std::path::Path) -> anyhow::Result<AnalystRound> {
    let topic = log.topic(TicketEvent::TOPIC);
    let total = TopicReader::from_beginning(log, &topic)?.end_offsets().values().sum::<i64>() as u64;
    say(format!("raw consume of {topic} ({total} events) …"));
    settle().await;
    let raw_consume = baseline::kafka_consume(log, &topic, total).await?;
    say(format!("  {}", per_event(&raw_consume)));
    let timed = |what: &'static str, args: Vec<String>| async move {
        say(format!("ticketing {what} over {total} events …"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        settle().await;
        let started = Instant::now();
        let cpu = CpuClock::start();
        system.run_tool(&args).await?;
        let measured = Throughput::new(total, started.elapsed(), None).with_cpu(cpu.and_then(|c| c.used()));
        say(format!("  {}", per_event(&measured)));
        Ok::<_, anyhow::Error>(measured)
    };
    let file = work_dir.join("export.jsonl");
    let dir = work_dir.join("export-avro");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&dir);
    let path = |p: &std::path::Path| p.display().to_string();
    let export_jsonl = timed("export", vec!["export".into(), "--topic".into(), "tickets".into(), "--output".into(), path(&file)]).await?;
    let export_avro = timed(
        "export --format avro",
        vec!["export".into(), "--topic".into(), "tickets".into(), "--format".into(), "avro".into(), "--output".into(), path(&dir)],
    )
    .await?;
    let audit = timed("audit tickets", vec!["audit".into(), "tickets".into()]).await?;
    Ok(AnalystRound { raw_consume, export_jsonl, export_avro, audit })
}

/// `--backlog-only`: the projector, the rebuild and the analysts' tools over a backlog, with
/// only the raw consume as a baseline; prints the figures (no report files).
async fn backlog_only(args: &Args, binary: &std::path::Path, broker: &LocalKafka, work_dir: &std::path::Path) -> anyhow::Result<()> {
    let namespace = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let mut log = LogConfig::new(broker.bootstrap_servers(), namespace.clone());
    log.partitions = args.partitions;
    log.fetch_wait_ms = args.fetch_wait_ms;
    say(format!("broker on {}, namespace {namespace}, work dir {}", broker.bootstrap_servers(), work_dir.display()));
    let store_env = vec![("TICKETING_STORE".to_string(), "embedded".to_string())];
    let mut system = System::start(binary, args.topology, &log, &store_env, work_dir).await?;
    let (projection, replay) = projection_and_replay(&mut system, &log, args.replay_events).await?;
    let tools = analyst_tools(&system, &log, work_dir, args.tool_rounds).await?;
    say(format!("projector {:.0} events/s, rebuild {:.0} events/s", projection.per_second, replay.per_second));
    say(format!("the median of {} rounds, each tool beside the raw consume of its round:", args.tool_rounds));
    for median in tools.median_rounds() {
        say(format!(
            "{}: {:.0} events/s, {:.1}% of raw consume ({:.0}/s)",
            median.tool,
            median.measured.per_second,
            100.0 * median.ratio(),
            median.raw_consume.per_second
        ));
    }
    for line in tools.cpu_summary() {
        say(line);
    }
    if args.hold {
        let file = args.out.join("tools.env");
        let exports: String = system.tool_env().iter().map(|(k, v)| format!("export {k}='{v}'\n")).collect();
        std::fs::write(&file, exports)?;
        say(format!("holding the broker and registry until Ctrl-C; `. {}` points ticketing at them", file.display()));
        tokio::signal::ctrl_c().await?;
    }
    system.stop().await?;
    Ok(())
}

/// Events a projection has handled (applied, ignored or poison), from `/metrics` text.
fn projected(metrics: &str, projection: &str) -> u64 {
    let label = format!("projection=\"{projection}\"");
    metrics
        .lines()
        .filter(|l| l.contains("projection_events_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A rate and, where measured, the machine's CPU per event.
fn per_event(measured: &Throughput) -> String {
    match measured.cpu {
        Some(cpu) => format!(
            "{:.0} events/s; the machine {:.2} core-µs per event ({:.2} of {} cores busy)",
            measured.per_second,
            cpu.micros_per_operation(measured.operations),
            cpu.cores_busy,
            cpu.cores
        ),
        None => format!("{:.0} events/s", measured.per_second),
    }
}

/// Writes what earlier stages left dirty in the page cache (an export writes 600 MB) before a
/// stage is measured: the kernel's writeback of one stage ran during the next and counted in
/// its CPU (a tool's CPU per event grew by half from the first round to the third).
async fn settle() {
    match tokio::process::Command::new("sync").status().await {
        Ok(status) if status.success() => {}
        other => say(format!("`sync` before a measurement failed ({other:?}); writeback may count in the next figure")),
    }
}
