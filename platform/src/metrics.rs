//! Prometheus metrics of every component, rendered as text on `/metrics`.
//!
//! Each figure is recorded through one small function here, so names and labels stay in one
//! place: HTTP requests per route and status, command outcomes, projector lag per partition,
//! projection results.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    aggregate: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    projection: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: String,
    result: String,
}

/// What one projection did with events: the `projection_events` counters of its three results.
#[derive(Debug, Clone)]
pub struct ProjectionEvents {
    /// Events that changed the read model.
    pub applied: Counter,
    /// Events the read model already reflected (or that change nothing).
    pub ignored: Counter,
    /// Events that could not be applied and were skipped.
    pub poison: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadModelLabels {
    read_model: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: HistogramFamily<HttpLabels>,
    commands: Family<CommandLabels, Counter>,
    projector_lag: Family<PartitionLabels, Gauge>,
    projection_events: Family<ProjectionLabels, Counter>,
    expiration_pending: Gauge,
    echoes_pending: Family<TopicLabels, Gauge>,
    shed: Counter,
    payments: Family<CommandLabels, Counter>,
    audit_differences: Family<ReadModelLabels, Gauge>,
    audit_finished: Family<ReadModelLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ticketing");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency: HistogramFamily<HttpLabels> = Family::new_with_constructor(latency_histogram);
        let commands = Family::<CommandLabels, Counter>::default();
        let projector_lag = Family::<PartitionLabels, Gauge>::default();
        let projection_events = Family::<ProjectionLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route, method and status", http_requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            http_latency.clone(),
        );
        registry.register("commands", "Command outcomes: accepted, rejected, conflict, unavailable", commands.clone());
        registry.register("projector_lag_records", "Records not yet applied, per projection and partition", projector_lag.clone());
        registry.register("projection_events", "Events a projection applied or ignored", projection_events.clone());
        let expiration_pending = Gauge::default();
        registry.register("expiration_deadlines_pending", "Order payment deadlines not yet fired", expiration_pending.clone());
        let echoes_pending = Family::<TopicLabels, Gauge>::default();
        registry.register(
            "command_echoes_pending",
            "Events appended by commands still waiting for their echo from the log, per topic",
            echoes_pending.clone(),
        );
        let shed = Counter::default();
        registry.register("requests_shed", "Requests answered 503 at once because too many were in flight", shed.clone());
        let payments = Family::<CommandLabels, Counter>::default();
        registry.register("payments", "Payment outcomes: succeeded, declined, unavailable", payments.clone());
        let audit_differences = Family::<ReadModelLabels, Gauge>::default();
        registry.register(
            "audit_differences",
            "Rows the last audit found different from a replay of the log, per read model (0: it matched)",
            audit_differences.clone(),
        );
        let audit_finished = Family::<ReadModelLabels, Gauge>::default();
        registry.register(
            "audit_last_run_timestamp_seconds",
            "When the last audit of each read model ended, in seconds since the epoch",
            audit_finished.clone(),
        );
        Self {
            registry,
            http_requests,
            http_latency,
            commands,
            projector_lag,
            projection_events,
            expiration_pending,
            echoes_pending,
            shed,
            payments,
            audit_differences,
            audit_finished,
        }
    }
}

/// The metrics of this process.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

impl Metrics {
    /// Records one answered HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = HttpLabels { route: route.to_string(), method: method.to_string(), status };
        self.http_requests.get_or_create(&labels).inc();
        self.http_latency.get_or_create(&labels).observe(seconds);
    }

    /// Records a command outcome (`accepted`, `rejected`, `conflict`, `unavailable`).
    pub fn command(&self, aggregate: &str, outcome: &str) {
        let labels = CommandLabels { aggregate: aggregate.to_string(), outcome: outcome.to_string() };
        self.commands.get_or_create(&labels).inc();
    }

    /// Sets a projector's lag on one partition.
    pub fn projector_lag(&self, projection: &str, partition: i32, lag: i64) {
        let labels = PartitionLabels { projection: projection.to_string(), partition };
        self.projector_lag.get_or_create(&labels).set(lag);
    }

    /// The counters of what `projection` does with events, looked up once: a replay counts
    /// hundreds of thousands of events a second, and a lookup by labels costs two strings and
    /// a lock each.
    pub fn projection_events(&self, projection: &str) -> ProjectionEvents {
        let counter = |result: &str| {
            let labels = ProjectionLabels { projection: projection.to_string(), result: result.to_string() };
            self.projection_events.get_or_create(&labels).clone()
        };
        ProjectionEvents { applied: counter("applied"), ignored: counter("ignored"), poison: counter("poison") }
    }

    /// Sets the number of pending expiration deadlines.
    pub fn expiration_pending(&self, pending: i64) {
        self.expiration_pending.set(pending);
    }

    /// Counts events of `topic` whose command waits for their echo (negative: no longer
    /// waiting).
    pub fn echoes_pending(&self, topic: &str, change: i64) {
        self.echoes_pending.get_or_create(&TopicLabels { topic: topic.to_string() }).inc_by(change);
    }

    /// Counts a request shed for load.
    pub fn shed(&self) {
        self.shed.inc();
    }

    /// Records a payment outcome (`succeeded`, `declined`, `unavailable`).
    pub fn payment(&self, outcome: &str) {
        let labels = CommandLabels { aggregate: "payments".into(), outcome: outcome.to_string() };
        self.payments.get_or_create(&labels).inc();
    }

    /// Sets the outcome of the last audit of a read model.
    pub fn audit(&self, read_model: &str, differences: u64, finished_at_ms: i64) {
        let labels = ReadModelLabels { read_model: read_model.to_string() };
        self.audit_differences.get_or_create(&labels).set(i64::try_from(differences).unwrap_or(i64::MAX));
        self.audit_finished.get_or_create(&labels).set(finished_at_ms / 1000);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Middleware counting and timing every request by matched route.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    METRICS.http_request(&route, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// The `/metrics` handler.
pub async fn metrics_handler() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        METRICS.render(),
    )
}
