//! Latency histograms (HDR, microseconds) and outcome counts per route.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::mix::Operation;

/// Longest latency a histogram keeps exactly; longer ones are clamped to it.
const HIGHEST_MICROS: u64 = 120_000_000;

/// A latency distribution with three significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, HIGHEST_MICROS);
        self.0.record(micros).expect("clamped into range");
    }

    /// Adds every sample of `other`.
    pub fn add(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("same bounds");
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p95_ms: ms(self.0.value_at_quantile(0.95)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Success,
    /// 4xx: the API refused the request (e.g. a ticket reserved meanwhile).
    Rejected,
    /// 5xx.
    Failed,
    /// No answer: connection refused or reset, or the client's timeout.
    Transport,
}

impl Outcome {
    /// The outcome of an HTTP status.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=299 => Outcome::Success,
            400..=499 => Outcome::Rejected,
            _ => Outcome::Failed,
        }
    }
}

/// What happened on one route.
#[derive(Debug, Clone, Default)]
pub struct RouteStats {
    /// Latency from the intended send time to the answer, of every answered request.
    pub latencies: Latencies,
    /// 2xx answers.
    pub succeeded: u64,
    /// 4xx answers.
    pub rejected: u64,
    /// 5xx answers.
    pub failed: u64,
    /// Requests without an answer.
    pub transport_errors: u64,
    /// Arrivals that found nothing to act on (no order to pay yet), so sent nothing.
    pub skipped: u64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
}

/// Counts since the last progress line.
#[derive(Debug, Default)]
struct Window {
    completed: u64,
    errors: u64,
    latencies: Latencies,
}

#[derive(Debug, Default)]
struct Inner {
    routes: BTreeMap<Operation, RouteStats>,
    visibility: Latencies,
    stale_reads: u64,
    window: Window,
}

/// Collects the outcome of every request of a run; shared by every request task.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

/// Figures of the last progress window.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowFigures {
    /// Requests answered (or failed) in the window.
    pub completed: u64,
    /// Of those, 5xx and transport errors.
    pub errors: u64,
    /// 99th percentile latency in the window.
    pub p99_ms: f64,
}

impl Recorder {
    /// Records an answered or failed request.
    pub fn record(&self, operation: Operation, outcome: Outcome, status: Option<u16>, latency: Duration) {
        let mut inner = self.inner.lock().expect("recorder lock");
        let stats = inner.routes.entry(operation).or_default();
        match outcome {
            Outcome::Success => stats.succeeded += 1,
            Outcome::Rejected => stats.rejected += 1,
            Outcome::Failed => stats.failed += 1,
            Outcome::Transport => stats.transport_errors += 1,
        }
        if let Some(status) = status {
            *stats.statuses.entry(status).or_default() += 1;
        }
        if outcome != Outcome::Transport {
            stats.latencies.record(latency);
        }
        inner.window.completed += 1;
        if matches!(outcome, Outcome::Failed | Outcome::Transport) {
            inner.window.errors += 1;
        } else {
            inner.window.latencies.record(latency);
        }
    }

    /// Records an arrival that had nothing to act on.
    pub fn skip(&self, operation: Operation) {
        self.inner.lock().expect("recorder lock").routes.entry(operation).or_default().skipped += 1;
    }

    /// Records how long after a command's answer its write was visible through the query API;
    /// `stale` when the query API gave up waiting.
    pub fn visibility(&self, lag: Duration, stale: bool) {
        let mut inner = self.inner.lock().expect("recorder lock");
        inner.visibility.record(lag);
        if stale {
            inner.stale_reads += 1;
        }
    }

    /// Figures since the previous call.
    pub fn take_window(&self) -> WindowFigures {
        let mut inner = self.inner.lock().expect("recorder lock");
        let window = std::mem::take(&mut inner.window);
        WindowFigures { completed: window.completed, errors: window.errors, p99_ms: window.latencies.summary().p99_ms }
    }

    /// Everything recorded: per-route stats, visibility lags, stale reads.
    pub fn snapshot(&self) -> (BTreeMap<Operation, RouteStats>, Latencies, u64) {
        let inner = self.inner.lock().expect("recorder lock");
        (inner.routes.clone(), inner.visibility.clone(), inner.stale_reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut latencies = Latencies::default();
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 100);
        assert!((summary.p50_ms - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p99_ms - 99.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{summary:?}");
    }

    #[test]
    fn outcomes_are_counted_per_route_and_errors_per_window() {
        let recorder = Recorder::default();
        recorder.record(Operation::Browse, Outcome::Success, Some(200), Duration::from_millis(2));
        recorder.record(Operation::Order, Outcome::Rejected, Some(400), Duration::from_millis(3));
        recorder.record(Operation::Order, Outcome::Transport, None, Duration::from_secs(10));
        recorder.skip(Operation::Pay);
        let window = recorder.take_window();
        assert_eq!((window.completed, window.errors), (3, 1));
        assert_eq!(recorder.take_window().completed, 0);
        let (routes, _, _) = recorder.snapshot();
        let orders = &routes[&Operation::Order];
        assert_eq!((orders.rejected, orders.transport_errors, orders.latencies.count()), (1, 1, 1));
        assert_eq!(routes[&Operation::Pay].skipped, 1);
    }
}
