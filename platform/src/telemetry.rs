//! Tracing setup shared by every component, and W3C trace-context propagation across HTTP and
//! Kafka headers, so one trace covers a command, its append, the projector's write and the
//! commands that follow from it.

use std::collections::HashMap;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Flushes and stops span export when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), JSON lines when
/// `LOG_FORMAT=json`, and OTLP/HTTP span export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
/// Later calls are ignored (tests call it often).
pub fn init_tracing() -> TelemetryGuard {
    let mut export_error = None;
    let provider = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").and_then(|_| {
        match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name(
                                std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "ticketing".into()),
                            )
                            .build(),
                    )
                    .build(),
            ),
            Err(error) => {
                export_error = Some(error);
                None
            }
        }
    });
    let guard = init_tracing_with(provider);
    if let Some(error) = export_error {
        tracing::warn!(message = "OpenTelemetry export is disabled.", %error);
    }
    guard
}

/// Like [`init_tracing`] with a given tracer provider (tests pass an in-memory exporter).
pub fn init_tracing_with(provider: Option<SdkTracerProvider>) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("ticketing")));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let (text, json) = if json {
        (None, Some(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)))
    } else {
        (Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)), None)
    };
    // Already installed: keep the first one.
    let _ = tracing_subscriber::registry().with(filter).with(otel).with(text).with(json).try_init();
    TelemetryGuard { provider }
}

struct HeaderMapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for HeaderMapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct PairsCarrier<'a>(&'a [(String, Vec<u8>)]);

impl Extractor for PairsCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The W3C trace-context headers (`traceparent`, `tracestate`) of the current span.
pub fn current_trace_headers() -> HashMap<String, String> {
    let mut headers = HashMap::new();
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderMapCarrier(&mut headers));
    headers
}

/// Makes `span` a child of the trace carried in record or request headers, if any.
pub fn continue_trace(span: &tracing::Span, headers: &[(String, Vec<u8>)]) {
    let context = TraceContextPropagator::new().extract(&PairsCarrier(headers));
    let _ = span.set_parent(context);
}

/// Middleware opening one span per request, continuing the caller's trace when it sent a
/// `traceparent` header.
pub async fn trace_http(request: Request, next: Next) -> Response {
    let span = tracing::info_span!("http", method = %request.method(), path = %request.uri().path());
    let headers: Vec<(String, Vec<u8>)> = request
        .headers()
        .iter()
        .filter(|(name, _)| matches!(name.as_str(), "traceparent" | "tracestate"))
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    continue_trace(&span, &headers);
    next.run(request).instrument(span).await
}
