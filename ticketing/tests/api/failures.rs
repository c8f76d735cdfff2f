use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Deployment, TestBroker, read_ticket_log};

both_stores! {
async fn with_the_broker_down_commands_answer_503_within_5_s_and_nothing_is_half_written() {
    let mut broker = TestBroker::own().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let id = app.create_ticket("alice", "concert", 20.0).await.id();

    broker.stop().await;
    let started = Instant::now();
    let created = app
        .request(Method::POST, "/api/tickets", Some("alice"), Some(json!({"title": "lost", "price": 5})))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(created.status, StatusCode::SERVICE_UNAVAILABLE, "{created:?}");
    created.assert_error_shape();
    assert!(elapsed < Duration::from_secs(5), "answered after {elapsed:?}");
    let updated = app
        .request(Method::PUT, &format!("/api/tickets/{id}"), Some("alice"), Some(json!({"title": "lost", "price": 5})))
        .await;
    assert_eq!(updated.status, StatusCode::SERVICE_UNAVAILABLE, "{updated:?}");

    broker.restart().await;
    let events = read_ticket_log(&deployment.log(), &app.registry_url()).await;
    assert_eq!(events.len(), 1, "only the ticket created before the outage is in the log: {events:?}");

    // The service recovers by itself once the broker is back.
    let mut recovered = None;
    for _ in 0..40 {
        let reply = app
            .request(Method::POST, "/api/tickets", Some("alice"), Some(json!({"title": "after", "price": 5})))
            .await;
        if reply.status == StatusCode::CREATED {
            recovered = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let recovered = recovered.expect("commands succeed again after the broker restarts");
    // The projector rejoins its group after the outage and catches up.
    let path = format!("/api/tickets/{}", recovered.id());
    app.eventually(&path, None, Duration::from_secs(45), |r| r.body["title"] == "after").await;
    app.stop().await;
}
}

both_stores! {
async fn a_retry_with_the_key_of_a_503_whose_write_landed_returns_the_first_outcome() {
    let mut broker = TestBroker::own().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    app.create_ticket("alice", "warm-up", 1.0).await;

    // The broker takes the append but answers only after the command's deadline.
    broker.freeze();
    let first = app
        .request(Method::POST, "/api/tickets", Some("alice"), Some(json!({"title": "landed", "price": 5})))
        .await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE, "{first:?}");
    assert_eq!(first.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"), "{first:?}");
    let key = first
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("the answer names the command's idempotency key");
    broker.thaw();

    let mut retried = None;
    for _ in 0..60 {
        let reply = app
            .send(
                Method::POST,
                "/api/tickets",
                Some("alice"),
                Some(json!({"title": "landed", "price": 5})),
                &[("idempotency-key", key.clone())],
            )
            .await;
        if reply.status == StatusCode::CREATED {
            retried = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let retried = retried.expect("the retry succeeds once the broker answers");
    let again = app
        .send(Method::POST, "/api/tickets", Some("alice"), Some(json!({"title": "landed", "price": 5})), &[("idempotency-key", key)])
        .await;
    assert_eq!(again.body, retried.body, "every retry gets the first outcome");
    assert_eq!(retried.body["version"], 0);
    let events = read_ticket_log(&deployment.log(), &app.registry_url()).await;
    let mut arbiter = platform::arbiter::VersionArbiter::default();
    let created: Vec<_> = events
        .iter()
        .filter(|e| e.metadata.aggregate_id == retried.id())
        .filter(|e| arbiter.admit(&e.metadata) == platform::arbiter::Verdict::Valid)
        .collect();
    assert_eq!(created.len(), 1, "one ticket, created once: {events:?}");
    let metrics = app.request(Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().expect("metrics are text").to_string();
    let series = format!("ticketing_command_echoes_pending{{topic=\"{}\"}} ", deployment.log().topic("tickets"));
    let pending = text.lines().find(|l| l.starts_with(&series)).expect("the gauge is exported");
    assert_eq!(pending.trim_start_matches(&series), "0", "no echo is awaited once every command answered");
    app.stop().await;
}
}

both_stores! {
async fn requests_beyond_the_in_flight_bound_or_past_their_deadline_get_503_with_retry_after() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    // Two sign-ups at a time at most; each hashes a password for tens of milliseconds.
    let app = deployment.spawn_with(|s| s.max_in_flight = 2).await;
    let signups = (0..24).map(|i| {
        let app = &app;
        async move {
            app.request(Method::POST, "/api/users/signup", None, Some(json!({"email": format!("u{i}@example.com"), "password": "secret"})))
                .await
        }
    });
    let replies = futures::future::join_all(signups).await;
    let shed: Vec<_> = replies.iter().filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(!shed.is_empty(), "some were shed: {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(replies.iter().all(|r| r.status == StatusCode::CREATED || r.status == StatusCode::SERVICE_UNAVAILABLE));
    for reply in shed {
        assert_eq!(reply.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        reply.assert_error_shape();
    }
    // Health answers whatever the load.
    assert_eq!(app.request(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    app.stop().await;

    // A deadline shorter than one sign-up: answered 503 at the deadline, with the key to retry.
    let app = deployment.spawn_with(|s| s.request_timeout_ms = 1).await;
    let started = Instant::now();
    let late = app
        .request(Method::POST, "/api/users/signup", None, Some(json!({"email": "late@example.com", "password": "secret"})))
        .await;
    assert_eq!(late.status, StatusCode::SERVICE_UNAVAILABLE, "{late:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered at the deadline, not after the work");
    assert!(late.headers.get("idempotency-key").is_some(), "{late:?}");
    app.stop().await;
}
}
