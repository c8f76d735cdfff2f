use std::time::Duration;

use platform::log::{LogProducer, TopicReader};
use reqwest::{Method, StatusCode};
use serde_json::json;
use ticketing::app::Component;

use crate::helpers::{Deployment, TestApp, TestBroker};

const LONG: Duration = Duration::from_secs(10);

async fn order(app: &TestApp, ticket_id: &str, buyer: &str) -> crate::helpers::Reply {
    let reply = app.request(Method::POST, "/api/orders", Some(buyer), Some(json!({"ticketId": ticket_id}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply
}

both_stores! {
async fn paying_completes_the_order_and_sells_the_ticket() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let ticket_id = app.create_ticket("seller", "paid", 12.5).await.id();
    let placed = order(&app, &ticket_id, "buyer").await;
    let order_id = placed.id();
    let pay = |token: &'static str, user: &'static str| {
        app.request(Method::POST, "/api/payments", Some(user), Some(json!({"token": token, "orderId": order_id})))
    };

    let declined = pay("tok_chargeDeclined", "buyer").await;
    assert_eq!(declined.status, StatusCode::BAD_REQUEST);
    assert_eq!(declined.body["errors"][0]["message"], "Your card was declined.");
    let still = app.get_after_as(&format!("/api/orders/{order_id}"), Some("buyer"), &placed).await;
    assert_eq!(still.body["status"], "created", "a declined charge leaves the order payable");

    assert_eq!(pay("tok_visa", "other").await.status, StatusCode::UNAUTHORIZED);
    let missing = app.request(Method::POST, "/api/payments", Some("buyer"), Some(json!({"token": "tok_visa", "orderId": "nope"}))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let invalid = app.request(Method::POST, "/api/payments", Some("buyer"), Some(json!({"orderId": ""}))).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.body["errors"].as_array().unwrap().len(), 2);

    let paid = pay("tok_visa", "buyer").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{paid:?}");
    assert!(paid.body["id"].is_string());

    let path = format!("/api/orders/{order_id}");
    app.eventually(&path, Some("buyer"), LONG, |r| r.body["status"] == "complete").await;
    let cancel = app.request(Method::DELETE, &path, Some("buyer"), None).await;
    assert_eq!(cancel.status, StatusCode::BAD_REQUEST, "a complete order cannot be cancelled");
    app.eventually(&format!("/api/tickets/{ticket_id}"), None, LONG, |r| r.body["orderId"] == order_id.as_str()).await;
    let listed = app.request(Method::GET, "/api/tickets", None, None).await;
    assert!(listed.body.as_array().unwrap().iter().all(|t| t["id"] != ticket_id.as_str()), "a sold ticket is not listed");
    let edit = app
        .request(Method::PUT, &format!("/api/tickets/{ticket_id}"), Some("seller"), Some(json!({"title": "x", "price": 1})))
        .await;
    assert_eq!(edit.status, StatusCode::BAD_REQUEST);
    let reorder = app.request(Method::POST, "/api/orders", Some("late"), Some(json!({"ticketId": ticket_id}))).await;
    assert_eq!(reorder.status, StatusCode::BAD_REQUEST);
    assert_eq!(reorder.body["errors"][0]["message"], "Ticket is already reserved");

    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"ticketing_payments_total{aggregate="payments",outcome="declined"}"#), "{metrics}");
    assert!(metrics.contains("ticketing_expiration_deadlines_pending"), "{metrics}");
    app.stop().await;
}
}

both_stores! {
async fn a_cancelled_order_cannot_be_paid() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let ticket_id = app.create_ticket("seller", "gone", 3.0).await.id();
    let order_id = order(&app, &ticket_id, "buyer").await.id();
    let cancelled = app.request(Method::DELETE, &format!("/api/orders/{order_id}"), Some("buyer"), None).await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    app.eventually(&format!("/api/orders/{order_id}"), Some("buyer"), LONG, |r| r.body["status"] == "cancelled").await;
    let paid = app
        .request(Method::POST, "/api/payments", Some("buyer"), Some(json!({"token": "tok_visa", "orderId": order_id})))
        .await;
    assert_eq!(paid.status, StatusCode::BAD_REQUEST);
    assert_eq!(paid.body["errors"][0]["message"], "Cannot pay for an cancelled order");
    app.stop().await;
}
}

async fn expires_within_the_window(worker_restarts: bool) {
    let broker = TestBroker::start().await;
    let mut deployment = Deployment::new(&broker).await;
    deployment.expiration_window_seconds = 3;
    let without_worker: Vec<Component> = Component::ALL.into_iter().filter(|c| *c != Component::Expiration).collect();
    let app = TestApp::start(deployment.settings(), &without_worker).await;
    let mut worker_settings = deployment.settings();
    worker_settings.registry_url = Some(app.registry_url());
    let mut worker = Some(TestApp::start(worker_settings.clone(), &[Component::Expiration]).await);

    let ticket_id = app.create_ticket("seller", "short", 8.0).await.id();
    let placed = order(&app, &ticket_id, "buyer").await;
    let order_id = placed.id();
    let expires_at = chrono::DateTime::parse_from_rfc3339(placed.body["expiresAt"].as_str().unwrap()).unwrap();
    if worker_restarts {
        tokio::time::sleep(Duration::from_millis(500)).await;
        worker.take().unwrap().stop().await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        worker = Some(TestApp::start(worker_settings, &[Component::Expiration]).await);
    }

    let path = format!("/api/orders/{order_id}");
    app.eventually(&path, Some("buyer"), LONG, |r| r.body["status"] == "cancelled").await;
    let late = chrono::Utc::now().signed_duration_since(expires_at);
    assert!(late < chrono::TimeDelta::milliseconds(1500), "cancelled {late:?} after the deadline");
    let paid = app
        .request(Method::POST, "/api/payments", Some("buyer"), Some(json!({"token": "tok_visa", "orderId": order_id})))
        .await;
    assert_eq!(paid.body["errors"][0]["message"], "Cannot pay for an cancelled order");
    app.eventually("/api/tickets", None, LONG, |r| r.body.as_array().unwrap().iter().any(|t| t["id"] == ticket_id.as_str()))
        .await;
    order(&app, &ticket_id, "next").await;
    worker.unwrap().stop().await;
    app.stop().await;
}

both_stores! {
async fn an_unpaid_order_is_cancelled_at_its_deadline_and_its_ticket_released() {
    expires_within_the_window(false).await;
}
}

both_stores! {
async fn the_deadline_holds_when_the_expiration_worker_restarts_inside_the_window() {
    expires_within_the_window(true).await;
}
}

both_stores! {
async fn a_poison_event_goes_to_the_dead_letter_topic_and_the_process_manager_goes_on() {
    let broker = TestBroker::start().await;
    let mut deployment = Deployment::new(&broker).await;
    deployment.expiration_window_seconds = 3;
    let app = deployment.spawn().await;
    let ticket_id = app.create_ticket("seller", "after poison", 1.0).await.id();
    let order_id = order(&app, &ticket_id, "buyer").await.id();

    // Garbage in the order's own partition, before its expiry.
    let log = deployment.log();
    let producer = LogProducer::new(&log).unwrap();
    producer.append(&log.topic("orders"), order_id.as_bytes(), b"\x00\x00\x00\x00\x63not avro", &[]).await.unwrap();
    let reader = TopicReader::from_beginning(&log, &log.topic("dead-letter")).unwrap();
    let parked = tokio::time::timeout(LONG, reader.next()).await.expect("a record is parked").unwrap();
    assert_eq!(parked.key.as_deref(), Some(order_id.as_bytes()));
    assert_eq!(parked.header("dlq_topic"), Some(log.topic("orders").as_bytes()));
    assert!(parked.header("dlq_reason").is_some());

    // Only the process manager releases the ticket of an expired order: it went on.
    app.eventually("/api/tickets", None, LONG, |r| r.body.as_array().unwrap().iter().any(|t| t["id"] == ticket_id.as_str()))
        .await;
    app.stop().await;
}
}
