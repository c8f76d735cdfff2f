//! One trace covers an HTTP command, its append to the log and the projector's write. Its own
//! test binary, because it installs the process-wide tracing subscriber.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::time::Duration;

use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use reqwest::{Method, StatusCode};
use serde_json::json;

use helpers::{Deployment, TestBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_covers_the_command_its_append_and_the_projector_write() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let _telemetry = platform::telemetry::init_tracing_with(Some(provider.clone()));
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let created = app
        .send(
            Method::POST,
            "/api/tickets",
            Some("alice"),
            Some(json!({"title": "traced", "price": 5})),
            &[("traceparent", traceparent)],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let shown = app.get_after(&format!("/api/tickets/{}", created.id()), &created).await;
    assert_eq!(shown.status, StatusCode::OK);

    let mut names = Vec::new();
    for _ in 0..50 {
        let _ = provider.force_flush();
        names = exporter
            .get_finished_spans()
            .unwrap()
            .iter()
            .filter(|span| span.span_context.trace_id().to_string() == trace_id)
            .map(|span| span.name.to_string())
            .collect();
        if names.iter().any(|n| n == "project") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for hop in ["http", "POST /api/tickets", "append", "project"] {
        assert!(names.iter().any(|n| n == hop), "no {hop:?} span in the client's trace: {names:?}");
    }

    // A cancelled order: the process manager's reaction (and its command) joins the trace.
    let order = app
        .request(Method::POST, "/api/orders", Some("bob"), Some(json!({"ticketId": created.id()})))
        .await;
    assert_eq!(order.status, StatusCode::CREATED);
    let cancel_trace = "0af7651916cd43dd8448eb211c80319c";
    let cancelled = app
        .send(
            Method::DELETE,
            &format!("/api/orders/{}", order.id()),
            Some("bob"),
            None,
            &[("traceparent", format!("00-{cancel_trace}-b7ad6b7169203331-01"))],
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    let mut names = Vec::new();
    for _ in 0..100 {
        let _ = provider.force_flush();
        names = exporter
            .get_finished_spans()
            .unwrap()
            .iter()
            .filter(|span| span.span_context.trace_id().to_string() == cancel_trace)
            .map(|span| span.name.to_string())
            .collect();
        if names.iter().any(|n| n == "order_saga") && names.iter().filter(|n| *n == "append").count() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for hop in ["DELETE /api/orders/{id}", "append", "order_saga"] {
        assert!(names.iter().any(|n| n == hop), "no {hop:?} span in the cancellation's trace: {names:?}");
    }
    app.stop().await;
}
