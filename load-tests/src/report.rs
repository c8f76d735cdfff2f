//! The benchmark report: every figure beside its raw baseline, the ratio, and the target.

use crate::baseline::{StoreBaseline, Throughput};
use crate::recorder::LatencySummary;
use crate::run::{LoadReport, markdown_table};
use crate::system::{ProcessCpu, ProcessMemory, Topology};

/// Where and when the figures were taken.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// UTC time of the run.
    pub date: String,
    /// CPU model.
    pub cpu: String,
    /// Cores the OS offers.
    pub cores: usize,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// `uname -sr`.
    pub kernel: String,
    /// Commit of the code measured.
    pub commit: String,
}

impl Machine {
    /// Reads the machine's description off `/proc` and git.
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| kib / 1024.0 / 1024.0)
            .unwrap_or(0.0);
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        Self {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            cpu,
            cores: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            memory_gib,
            kernel: run("uname", &["-sr"]),
            commit: run("git", &["rev-parse", "--short", "HEAD"]),
        }
    }
}

/// A closed-loop run of one route at its highest throughput.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Saturation {
    /// Method and path.
    pub route: String,
    /// Concurrent connections.
    pub workers: usize,
    /// Answers per second.
    pub per_second: f64,
    /// Latency per request.
    pub latency: LatencySummary,
    /// Non-2xx answers and failures.
    pub errors: u64,
}

/// The read store the measured system ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum StoreKind {
    /// The embedded engine (fjall).
    Embedded,
    /// CQL: Cassandra here, ScyllaDB in production.
    Cql,
}

/// Everything one `bench` run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// The machine.
    pub machine: Machine,
    /// How the components were spread over processes.
    pub topology: Topology,
    /// The system's read store.
    pub store: StoreKind,
    /// The engine name of the raw store baseline the system's store is compared with.
    pub system_store_engine: String,
    /// Partitions of every topic.
    pub partitions: i32,
    /// The consumers' `fetch.wait.max.ms`.
    pub fetch_wait_ms: u32,
    /// Whether producers were idempotent.
    pub idempotent_producers: bool,
    /// Raw keyed produce.
    pub kafka_produce: Throughput,
    /// Raw consume from the beginning.
    pub kafka_consume: Throughput,
    /// Raw store figures: fjall and the CQL server.
    pub stores: Vec<StoreBaseline>,
    /// Bare HTTP: axum answering fixed JSON on loopback, closed loop, on the idle machine.
    pub http: Throughput,
    /// Bare HTTP again while the system runs with no load: the CPU its idle consumers leave.
    pub http_beside_system: Throughput,
    /// CPU of each process while the system runs with no load.
    pub idle_cpu: Vec<ProcessCpu>,
    /// The mixed open-model run.
    pub mixed: LoadReport,
    /// Ticket commands only, at the end-to-end target's command rate.
    pub command_rate: LoadReport,
    /// `POST /api/tickets` at its highest throughput.
    pub command_saturation: Saturation,
    /// `GET /api/tickets/:id` at its highest throughput.
    pub query_saturation: Saturation,
    /// The live projector catching up with a backlog of ticket events.
    pub projection: Option<Throughput>,
    /// `ticketing rebuild tickets` over the whole tickets topic.
    pub replay: Option<Throughput>,
    /// The analysts' tools over the same backlog, beside a raw consume of it.
    pub analysts: Option<AnalystTools>,
    /// Resident memory of each process during the mixed run.
    pub memory: Vec<ProcessMemory>,
    /// Targets and how the run compares.
    pub targets: Vec<TargetCheck>,
}

/// How the audit is named among the tools.
const AUDIT: &str = "audit";

/// The analysts' tools' goal: this share of a raw consume's rate, in the same round.
pub const ANALYST_GOAL: f64 = 0.7;

/// The analysts' tools over the backlog of ticket events, in rounds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnalystTools {
    /// Each round's figures, in the order they ran (an odd count).
    pub rounds: Vec<AnalystRound>,
    /// [`crate::baseline::fjall_audit_floor`] over as many cells as the audited read model
    /// holds, where measured.
    pub audit_store_floor: Option<Throughput>,
}

/// One tool's figure beside the raw consume of the same round.
#[derive(Debug, Clone, Copy)]
pub struct ToolBesideRaw<'a> {
    /// What ran.
    pub tool: &'static str,
    /// The tool's rate.
    pub measured: &'a Throughput,
    /// The raw consume of its round.
    pub raw_consume: &'a Throughput,
}

impl ToolBesideRaw<'_> {
    /// The tool's rate over the raw consume's.
    pub fn ratio(&self) -> f64 {
        self.measured.per_second / self.raw_consume.per_second.max(1e-9)
    }

    /// The most machine CPU (core-µs per event, every process included) the tool may spend to
    /// reach `goal` of the raw consume's rate with every core busy.
    pub fn cpu_budget_micros(&self, goal: f64) -> Option<f64> {
        self.micros_over_raw(goal)
    }

    /// The highest ratio the tool could reach at the CPU it spends per event, with every core
    /// busy: where it stands whatever its threads wait for.
    pub fn cpu_bound_ratio(&self) -> Option<f64> {
        self.micros_over_raw(self.measured.cpu_micros_per_operation()?)
    }

    /// The machine's core-µs per second, over `x` times the raw consume's events per second:
    /// the CPU per event at ratio `x`, or the ratio at `x` core-µs per event (the same division).
    fn micros_over_raw(&self, x: f64) -> Option<f64> {
        let cores = f64::from(self.measured.cpu?.cores);
        Some(cores * 1e6 / (x.max(1e-9) * self.raw_consume.per_second.max(1e-9)))
    }
}

impl AnalystTools {
    /// The least machine CPU per event (core-µs) any audit of this design spends beside the
    /// median round's raw consume (its CPU, plus the store floor spread over the events), and
    /// the highest ratio to that raw consume it allows with every core busy.
    pub fn audit_floor(&self) -> Option<(f64, f64)> {
        let floor = self.audit_store_floor.as_ref()?;
        let audit = self.median_rounds().into_iter().find(|m| m.tool == AUDIT)?;
        let store = floor.cpu?.core_seconds * 1e6 / audit.measured.operations.max(1) as f64;
        let micros = audit.raw_consume.cpu_micros_per_operation()? + store;
        Some((micros, audit.micros_over_raw(micros)?))
    }

    /// What the machine's CPU says of the median rounds: per tool, its CPU per event, the CPU
    /// the goal allows and the ratio its cost allows; then the floor of any audit. One line
    /// each, for the bench's output and its report alike.
    pub fn cpu_summary(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .median_rounds()
            .into_iter()
            .filter_map(|median| {
                let (spent, budget, bound) =
                    (median.measured.cpu_micros_per_operation()?, median.cpu_budget_micros(ANALYST_GOAL)?, median.cpu_bound_ratio()?);
                Some(format!(
                    "CPU of `ticketing {}` (median round): {spent:.2} core-µs per event, machine-wide; {:.0}% of the raw consume allows {budget:.2}; at what it spends, {:.1}% is the most it can reach with every core busy",
                    median.tool,
                    ANALYST_GOAL * 100.0,
                    bound * 100.0
                ))
            })
            .collect();
        if let (Some((micros, bound)), Some(floor)) = (self.audit_floor(), &self.audit_store_floor) {
            lines.push(format!(
                "Floor of any audit that replays into a scratch namespace and reads both through: the raw consume's CPU plus fjall alone writing {} cells {} to a batch and reading them twice ({:.2} s): {micros:.2} core-µs per event, so {:.1}% of the raw consume at most",
                floor.operations,
                platform::store::FLUSH_BATCH,
                floor.seconds,
                bound * 100.0
            ));
        }
        lines
    }

    /// For each tool, the round whose ratio to its own raw consume is the median (a tool and a
    /// baseline from different rounds would not be a ratio of the same moment).
    pub fn median_rounds(&self) -> Vec<ToolBesideRaw<'_>> {
        let Some(first) = self.rounds.first() else { return Vec::new() };
        (0..first.tools().len())
            .map(|tool| {
                let mut beside: Vec<ToolBesideRaw<'_>> = self.rounds.iter().map(|round| round.tools()[tool]).collect();
                beside.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
                beside[beside.len() / 2]
            })
            .collect()
    }
}

/// One round of the analysts' tools, beside a raw consume of the same topic just before them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnalystRound {
    /// A raw consume of the whole tickets topic (no decoding).
    pub raw_consume: Throughput,
    /// `ticketing export --topic tickets` as JSON lines to a file.
    pub export_jsonl: Throughput,
    /// `ticketing export --topic tickets --format avro` to a directory.
    pub export_avro: Throughput,
    /// `ticketing audit tickets` (replay into a scratch namespace and the row-by-row diff).
    pub audit: Throughput,
}

impl AnalystRound {
    /// Each tool's figure beside this round's raw consume.
    pub fn tools(&self) -> [ToolBesideRaw<'_>; 3] {
        let beside = |tool, measured| ToolBesideRaw { tool, measured, raw_consume: &self.raw_consume };
        [beside("export (JSON lines)", &self.export_jsonl), beside("export (Avro)", &self.export_avro), beside(AUDIT, &self.audit)]
    }
}

/// One target of the issue beside what was measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetCheck {
    /// What is compared.
    pub name: String,
    /// The measured figure.
    pub measured: String,
    /// The raw baseline it is divided by.
    pub baseline: String,
    /// Measured ÷ baseline, for ratio targets.
    pub ratio: Option<f64>,
    /// The target.
    pub target: String,
    /// Whether the run meets it.
    pub met: bool,
}

/// Builds the five target checks.
pub fn target_checks(report: &BenchReport) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    let ratio_check = |name: &str, measured: f64, unit: &str, baseline: f64, baseline_name: &str, target: f64| TargetCheck {
        name: name.to_string(),
        measured: format!("{measured:.0} {unit}"),
        baseline: format!("{baseline:.0} {unit} ({baseline_name})"),
        ratio: Some(measured / baseline.max(1e-9)),
        target: format!("≥ {:.0}%", target * 100.0),
        met: measured / baseline.max(1e-9) >= target,
    };
    let command = &report.command_saturation;
    let mut throughput = ratio_check(
        "Command path (`POST /api/tickets`, closed loop)",
        command.per_second,
        "/s",
        report.kafka_produce.per_second,
        "raw keyed produce",
        0.5,
    );
    throughput.target = "≥ 50% with p99 ≤ 25 ms".into();
    throughput.measured = format!("{:.0} /s, p99 {:.1} ms", command.per_second, command.latency.p99_ms);
    throughput.met = throughput.met && command.latency.p99_ms <= 25.0;
    checks.push(throughput);
    let system_store = report.stores.iter().find(|s| s.engine == report.system_store_engine);
    if let (Some(projection), Some(store)) = (&report.projection, system_store) {
        checks.push(ratio_check(
            "Projection (live projector catching up)",
            projection.per_second,
            "events/s",
            store.writes.per_second,
            &format!("raw {} writes", store.engine),
            0.5,
        ));
    }
    if let Some(store) = system_store {
        checks.push(ratio_check(
            "Query API (`GET /api/tickets/:id`, closed loop)",
            report.query_saturation.per_second,
            "/s",
            store.point_reads.per_second,
            &format!("raw {} point reads", store.engine),
            0.7,
        ));
    }
    checks.push(ratio_check(
        "Query API (`GET /api/tickets/:id`) against bare HTTP",
        report.query_saturation.per_second,
        "/s",
        report.http.per_second,
        "axum answering fixed JSON, same client and connections",
        0.7,
    ));
    checks.push(ratio_check(
        "Query API (`GET /api/tickets/:id`) against bare HTTP beside the running system",
        report.query_saturation.per_second,
        "/s",
        report.http_beside_system.per_second,
        "axum answering fixed JSON while the idle system runs",
        0.7,
    ));
    let visibility = &report.command_rate.visibility;
    let achieved: f64 = report.command_rate.routes.iter().filter(|r| r.command).map(|r| r.throughput).sum();
    checks.push(TargetCheck {
        name: format!("End to end (command answered → visible) at {:.0} commands/s offered", report.command_rate.rate),
        measured: format!("p99 {:.1} ms ({achieved:.0} commands/s answered, {} reads timed out)", visibility.p99_ms, report.command_rate.stale_reads),
        baseline: "—".into(),
        ratio: None,
        target: "p99 ≤ 100 ms at 1,000 commands/s".into(),
        met: visibility.p99_ms <= 100.0 && report.command_rate.rate >= 1000.0 && achieved >= 0.99 * report.command_rate.rate,
    });
    if let Some(replay) = &report.replay {
        checks.push(ratio_check(
            "Replay (`ticketing rebuild tickets`)",
            replay.per_second,
            "events/s",
            report.kafka_consume.per_second,
            "raw consume",
            0.5,
        ));
    }
    if let Some(tools) = &report.analysts {
        for median in tools.median_rounds() {
            let what = format!("`ticketing {}`, median of {} rounds", median.tool, tools.rounds.len());
            let baseline = "raw consume of the same topic, same round";
            checks.push(ratio_check(&what, median.measured.per_second, "events/s", median.raw_consume.per_second, baseline, ANALYST_GOAL));
        }
    }
    checks
}

fn rate(t: &Throughput) -> String {
    match t.cpu {
        Some(cpu) => format!(
            "{:.0} /s ({} in {:.1} s; the machine {:.2} core-µs each, {:.2} of {} cores busy)",
            t.per_second,
            t.operations,
            t.seconds,
            cpu.micros_per_operation(t.operations),
            cpu.cores_busy,
            cpu.cores
        ),
        None => format!("{:.0} /s ({} in {:.1} s)", t.per_second, t.operations, t.seconds),
    }
}

impl BenchReport {
    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        out.push_str(&format!(
            "Measured {} on {} ({} cores, {:.0} GiB, {}), commit `{}`, topology `{:?}`, read store `{:?}`, {} partitions per topic, `fetch.wait.max.ms` {}, {} producers.\n\n",
            m.date,
            m.cpu,
            m.cores,
            m.memory_gib,
            m.kernel,
            m.commit,
            self.topology,
            self.store,
            self.partitions,
            self.fetch_wait_ms,
            if self.idempotent_producers { "idempotent" } else { "non-idempotent" }
        ));
        out.push_str("### Targets\n\n| what | measured | raw baseline | ratio | target | met |\n|---|---|---|---:|---|---|\n");
        for check in &self.targets {
            let ratio = check.ratio.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "—".into());
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                check.name,
                check.measured,
                check.baseline,
                ratio,
                check.target,
                if check.met { "yes" } else { "**no**" }
            ));
        }
        out.push_str("\n### Raw baselines (same machine, same run)\n\n| baseline | rate | latency p50 / p99 |\n|---|---|---|\n");
        let latency = |l: &Option<LatencySummary>| {
            l.map(|l| format!("{:.2} / {:.2} ms", l.p50_ms, l.p99_ms)).unwrap_or_else(|| "—".into())
        };
        out.push_str(&format!("| Kafka keyed produce (acks=all) | {} | {} |\n", rate(&self.kafka_produce), latency(&self.kafka_produce.latency)));
        out.push_str(&format!("| Kafka consume from the beginning | {} | — |\n", rate(&self.kafka_consume)));
        out.push_str(&format!("| Bare HTTP (axum, fixed JSON, loopback) | {} | {} |\n", rate(&self.http), latency(&self.http.latency)));
        out.push_str(&format!(
            "| Bare HTTP beside the running system (no load on it) | {} | {} |\n",
            rate(&self.http_beside_system),
            latency(&self.http_beside_system.latency)
        ));
        for store in &self.stores {
            out.push_str(&format!("| {} writes | {} | — |\n", store.engine, rate(&store.writes)));
            out.push_str(&format!("| {} point reads | {} | — |\n", store.engine, rate(&store.point_reads)));
        }
        out.push_str(&format!(
            "\n### Mixed load (open model, {:.0} requests/s offered for {:.0} s; mix {})\n\n",
            self.mixed.rate, self.mixed.duration_s, self.mixed.mix
        ));
        out.push_str(&markdown_table(&self.mixed));
        out.push_str(&format!(
            "\n### Ticket commands at {:.0}/s (open model, {:.0} s; create/update)\n\n",
            self.command_rate.rate, self.command_rate.duration_s
        ));
        out.push_str(&markdown_table(&self.command_rate));
        out.push_str("\n### Highest throughput (closed loop)\n\n| route | connections | answers/s | p50 ms | p99 ms | max ms | errors |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for s in [&self.command_saturation, &self.query_saturation] {
            out.push_str(&format!(
                "| `{}` | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |\n",
                s.route, s.workers, s.per_second, s.latency.p50_ms, s.latency.p99_ms, s.latency.max_ms, s.errors
            ));
        }
        out.push_str("\n### Projection and replay\n\n");
        match &self.projection {
            Some(p) => out.push_str(&format!("- Live projector catching up with a backlog: {}\n", rate(p))),
            None => out.push_str("- Live projector: not measured (`--replay-events 0`)\n"),
        }
        match &self.replay {
            Some(r) => out.push_str(&format!("- `ticketing rebuild tickets` (whole topic): {}\n", rate(r))),
            None => out.push_str("- Replay: not measured (`--replay-events 0`)\n"),
        }
        if let Some(tools) = &self.analysts {
            for (i, round) in tools.rounds.iter().enumerate() {
                out.push_str(&format!(
                    "- Analysts' tools, round {}: raw consume of the same topic {}; `ticketing export` (JSON lines to a file) {}; `ticketing export --format avro` {}; `ticketing audit tickets` {}\n",
                    i + 1,
                    rate(&round.raw_consume),
                    rate(&round.export_jsonl),
                    rate(&round.export_avro),
                    rate(&round.audit)
                ));
            }
            for line in tools.cpu_summary() {
                out.push_str(&format!("- {line}\n"));
            }
        }
        out.push_str("\n### Resident memory during the mixed run\n\n| process | median MiB | max MiB |\n|---|---:|---:|\n");
        for p in &self.memory {
            out.push_str(&format!("| {} | {:.1} | {:.1} |\n", p.name, p.median_mib, p.max_mib));
        }
        out.push_str("\n### CPU with the system running and no load\n\n| process | cores |\n|---|---:|\n");
        for p in &self.idle_cpu {
            out.push_str(&format!("| {} | {:.2} |\n", p.name, p.cores));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64) -> Throughput {
        Throughput { operations: 1, seconds: 1.0 / per_second, per_second, latency: None, cpu: None }
    }

    fn round(raw: f64, jsonl: f64, avro: f64, audit: f64) -> AnalystRound {
        AnalystRound { raw_consume: rate(raw), export_jsonl: rate(jsonl), export_avro: rate(avro), audit: rate(audit) }
    }

    #[test]
    fn each_tool_is_reported_beside_the_raw_consume_of_its_median_round() {
        // Round 1's raw consume stalled: its ratios are the highest, not the median.
        let tools = AnalystTools {
            rounds: vec![round(1_000.0, 900.0, 800.0, 500.0), round(2_000.0, 1_000.0, 1_500.0, 200.0), round(2_100.0, 1_200.0, 1_000.0, 220.0)],
            audit_store_floor: None,
        };
        let medians: Vec<(&str, f64, f64)> =
            tools.median_rounds().iter().map(|m| (m.tool, m.measured.per_second, m.raw_consume.per_second)).collect();
        assert_eq!(
            medians,
            [("export (JSON lines)", 1_200.0, 2_100.0), ("export (Avro)", 1_500.0, 2_000.0), ("audit", 220.0, 2_100.0)]
        );
    }

    #[test]
    fn the_cpu_budget_follows_the_raw_rate_and_the_cores() {
        let cpu = |core_seconds: f64| Some(crate::cpu::CpuUse { core_seconds, cores_busy: 1.5, cores: 2 });
        let raw = Throughput { operations: 1_000_000, seconds: 0.5, per_second: 2_000_000.0, latency: None, cpu: cpu(0.9) };
        let tool = Throughput { operations: 1_000_000, seconds: 2.0, per_second: 500_000.0, latency: None, cpu: cpu(3.0) };
        let beside = ToolBesideRaw { tool: "audit", measured: &tool, raw_consume: &raw };
        // Two cores at 70% of 2M events/s: 1.43 core-µs per event.
        assert!((beside.cpu_budget_micros(0.7).unwrap() - 2.0 / 1.4).abs() < 1e-9);
        // 3 core-µs per event on two cores: 666,667 events/s at most, a third of the raw rate.
        assert!((beside.cpu_bound_ratio().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        // The floor: the raw consume's 0.9 core-µs per event plus 0.4 core-s of store work over
        // 1M events, on two cores at 2M events/s.
        let round = AnalystRound { raw_consume: raw.clone(), export_jsonl: tool.clone(), export_avro: tool.clone(), audit: tool.clone() };
        let floor = Throughput { operations: 200_000, seconds: 0.3, per_second: 666_667.0, latency: None, cpu: cpu(0.4) };
        let tools = AnalystTools { rounds: vec![round], audit_store_floor: Some(floor) };
        let (micros, bound) = tools.audit_floor().unwrap();
        assert!((micros - 1.3).abs() < 1e-9, "{micros}");
        assert!((bound - 2.0 / 2.6).abs() < 1e-9, "{bound}");
        let summary = tools.cpu_summary();
        assert_eq!(summary.len(), 4, "a line per tool and the floor: {summary:?}");
        assert!(summary[3].contains("1.30 core-µs per event, so 76.9%"), "{}", summary[3]);
        assert_eq!(AnalystTools { audit_store_floor: None, ..tools }.audit_floor(), None);
        let unmeasured = Throughput { cpu: None, ..tool.clone() };
        assert_eq!(ToolBesideRaw { tool: "audit", measured: &unmeasured, raw_consume: &raw }.cpu_bound_ratio(), None);
    }
}
