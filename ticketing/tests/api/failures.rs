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
