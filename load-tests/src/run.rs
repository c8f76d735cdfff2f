//! The open-model run: arrivals at a constant rate whatever the system does, each sent at its
//! scheduled moment and timed from it (no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::mix::{Mix, Operation};
use crate::recorder::{LatencySummary, Recorder, WindowFigures};
use crate::scenario::Marketplace;

/// The arrival schedule: the `n`th request is due at `start + n / rate`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Requests per second.
    pub rate: f64,
    /// How long arrivals go on.
    pub duration: Duration,
}

impl Schedule {
    /// Number of arrivals.
    pub fn arrivals(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).floor() as u64
    }

    /// When the `n`th arrival is due, as an offset from the start.
    pub fn due(&self, n: u64) -> Duration {
        Duration::from_secs_f64(n as f64 / self.rate)
    }
}

/// A progress line's figures, once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Seconds since the start.
    pub elapsed: Duration,
    /// Requests sent so far.
    pub sent: u64,
    /// Requests not answered yet.
    pub in_flight: u64,
    /// The last second's figures.
    pub window: WindowFigures,
}

/// One route's figures in a report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteReport {
    /// Method and path.
    pub route: &'static str,
    /// Whether it appends to the log.
    pub command: bool,
    /// Answers per second over the run.
    pub throughput: f64,
    /// 2xx.
    pub succeeded: u64,
    /// 4xx.
    pub rejected: u64,
    /// 5xx.
    pub failed: u64,
    /// No answer.
    pub transport_errors: u64,
    /// Arrivals with nothing to act on.
    pub skipped: u64,
    /// Latency from the scheduled send time.
    pub latency: LatencySummary,
}

/// What an open-model run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Scheduled requests per second.
    pub rate: f64,
    /// Seconds of arrivals.
    pub duration_s: f64,
    /// The mix, as shares.
    pub mix: String,
    /// Requests sent.
    pub sent: u64,
    /// Answers (any status) per second, measured over the whole run including the drain.
    pub throughput: f64,
    /// Per route.
    pub routes: Vec<RouteReport>,
    /// Every route together.
    pub all: LatencySummary,
    /// Commands only (every route that appends).
    pub commands: LatencySummary,
    /// Command answered → the write visible through the query API (tickets and orders).
    pub visibility: LatencySummary,
    /// Reads that gave up waiting for their write (`X-Consistency: stale`).
    pub stale_reads: u64,
    /// Worst delay between an arrival's due time and the generator sending it.
    pub generator_lag_max_ms: f64,
}

impl LoadReport {
    /// 5xx and transport errors over every route.
    pub fn errors(&self) -> u64 {
        self.routes.iter().map(|r| r.failed + r.transport_errors).sum()
    }
}

/// Runs `schedule` with `mix` against `marketplace`, calling `progress` once a second.
pub async fn run_open_model(
    marketplace: Arc<Marketplace>,
    schedule: Schedule,
    mix: &Mix,
    mut progress: impl FnMut(Progress),
) -> LoadReport {
    let recorder = Arc::new(Recorder::default());
    let in_flight = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let started = Instant::now() + Duration::from_millis(20);
    let total = schedule.arrivals();
    let mut generator_lag = Duration::ZERO;
    let mut next_progress = Duration::from_secs(1);
    let figures = |sent: u64| Progress {
        elapsed: started.elapsed(),
        sent,
        in_flight: in_flight.load(Ordering::Relaxed),
        window: recorder.take_window(),
    };
    for n in 0..total {
        let due = schedule.due(n);
        tokio::time::sleep_until(start + due).await;
        let intended = started + due;
        generator_lag = generator_lag.max(intended.elapsed());
        let operation = mix.pick(fastrand::f64());
        let (marketplace, task_recorder, in_flight_now) = (marketplace.clone(), recorder.clone(), in_flight.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            marketplace.perform(operation, intended, &task_recorder).await;
            in_flight_now.fetch_sub(1, Ordering::Relaxed);
        });
        if due >= next_progress {
            next_progress += Duration::from_secs(1);
            progress(figures(n + 1));
        }
    }
    // Drain: requests time out on their own (the client's timeout), so this ends.
    while in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() >= next_progress {
            next_progress += Duration::from_secs(1);
            progress(figures(total));
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(schedule.duration.as_secs_f64());
    let (routes, visibility, stale_reads) = recorder.snapshot();
    let mut all = crate::recorder::Latencies::default();
    let mut commands = crate::recorder::Latencies::default();
    let mut reports = Vec::new();
    for operation in Operation::ALL {
        let Some(stats) = routes.get(&operation) else { continue };
        all.add(&stats.latencies);
        if operation.is_command() {
            commands.add(&stats.latencies);
        }
        let answered = stats.succeeded + stats.rejected + stats.failed;
        reports.push(RouteReport {
            route: operation.route(),
            command: operation.is_command(),
            throughput: answered as f64 / elapsed,
            succeeded: stats.succeeded,
            rejected: stats.rejected,
            failed: stats.failed,
            transport_errors: stats.transport_errors,
            skipped: stats.skipped,
            latency: stats.latencies.summary(),
        });
    }
    LoadReport {
        rate: schedule.rate,
        duration_s: schedule.duration.as_secs_f64(),
        mix: mix.to_string(),
        sent: total,
        throughput: all.count() as f64 / elapsed,
        routes: reports,
        all: all.summary(),
        commands: commands.summary(),
        visibility: visibility.summary(),
        stale_reads,
        generator_lag_max_ms: generator_lag.as_secs_f64() * 1000.0,
    }
}

/// The report as a Markdown table.
pub fn markdown_table(report: &LoadReport) -> String {
    let mut out = String::new();
    out.push_str("| route | answers/s | 2xx | 4xx | 5xx | no answer | skipped | p50 ms | p95 ms | p99 ms | max ms |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let row = |name: &str, rate: Option<f64>, r: Option<&RouteReport>, l: &LatencySummary| {
        let (ok, rej, fail, tr, skip) =
            r.map(|r| (r.succeeded, r.rejected, r.failed, r.transport_errors, r.skipped)).unwrap_or_default();
        let counts = if r.is_some() {
            format!("{ok} | {rej} | {fail} | {tr} | {skip}")
        } else {
            " | | | |".to_string()
        };
        let rate = rate.map(|r| format!("{r:.1}")).unwrap_or_default();
        format!(
            "| {name} | {rate} | {counts} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
        )
    };
    for route in &report.routes {
        out.push_str(&row(&format!("`{}`", route.route), Some(route.throughput), Some(route), &route.latency));
    }
    out.push_str(&row("**all routes**", Some(report.throughput), None, &report.all));
    out.push_str(&row("**commands**", None, None, &report.commands));
    out.push_str(&format!(
        "\nCommand answered → visible through the query API ({} writes): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} reads gave up waiting.\n",
        report.visibility.count,
        report.visibility.p50_ms,
        report.visibility.p95_ms,
        report.visibility.p99_ms,
        report.visibility.max_ms,
        report.stale_reads
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spaces_arrivals_evenly() {
        let schedule = Schedule { rate: 200.0, duration: Duration::from_secs(3) };
        assert_eq!(schedule.arrivals(), 600);
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(200), Duration::from_secs(1));
        assert_eq!(schedule.due(1), Duration::from_millis(5));
    }
}
