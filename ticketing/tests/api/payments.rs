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
    // Held while the charge was in flight, payable again once it was declined.
    let still = app.eventually(&format!("/api/orders/{order_id}"), Some("buyer"), LONG, |r| r.body["status"] == "created").await;
    assert_eq!(still.body["version"], 2, "created, awaiting payment, declined: {still:?}");

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

    // Garbage of another order in the same partition, before this one's expiry (an order whose
    // own event is unreadable takes no command at all: see the dead-letter tests).
    let log = deployment.log();
    let partitions = log.partitions;
    let poisoned = (0..)
        .map(|i| format!("poisoned-{i}"))
        .find(|key| {
            platform::ownership::partition_for(key.as_bytes(), partitions)
                == platform::ownership::partition_for(order_id.as_bytes(), partitions)
        })
        .unwrap();
    let producer = LogProducer::new(&log).unwrap();
    producer.append(&log.topic("orders"), poisoned.as_bytes(), b"\x00\x00\x00\x00\x63not avro", &[]).await.unwrap();
    let reader = TopicReader::from_beginning(&log, &log.topic("dead-letter")).unwrap();
    let parked = tokio::time::timeout(LONG, reader.next()).await.expect("a record is parked").unwrap();
    assert_eq!(parked.key.as_deref(), Some(poisoned.as_bytes()));
    assert_eq!(parked.header("dlq_topic"), Some(log.topic("orders").as_bytes()));
    assert!(parked.header("dlq_reason").is_some());

    // Only the process manager releases the ticket of an expired order: it went on.
    app.eventually("/api/tickets", None, LONG, |r| r.body.as_array().unwrap().iter().any(|t| t["id"] == ticket_id.as_str()))
        .await;
    app.stop().await;
}
}

both_stores! {
async fn a_declined_card_is_retried_with_another_card_as_a_new_attempt() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let ticket_id = app.create_ticket("seller", "retry", 10.0).await.id();
    let order_id = order(&app, &ticket_id, "buyer").await.id();
    let pay = |token: &'static str| app.request(Method::POST, "/api/payments", Some("buyer"), Some(json!({"token": token, "orderId": order_id})));
    let declined = pay("tok_chargeDeclined").await;
    assert_eq!(declined.status, StatusCode::BAD_REQUEST, "{declined:?}");
    assert_eq!(declined.body["errors"][0]["message"], "Your card was declined.");
    let paid = pay("tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{paid:?}");
    let shown = app.get_after_as(&format!("/api/orders/{order_id}"), Some("buyer"), &paid).await;
    assert_eq!(shown.body["status"], "complete", "{shown:?}");
    // Paying again answers the payment, and charges nothing more.
    assert_eq!(pay("tok_visa").await.status, StatusCode::CREATED);

    let events = payment_events(&deployment.log(), &app.registry_url()).await;
    let kinds: Vec<String> = events.iter().map(describe).collect();
    assert_eq!(
        kinds,
        vec![
            format!("started 1 {order_id}:attempt-1"),
            "declined 1".to_string(),
            format!("started 2 {order_id}:attempt-2"),
            "charged".to_string(),
        ],
        "an attempt is recorded before each charge, each with its own key"
    );
    app.stop().await;
}
}

fn describe(event: &schemas::payments::PaymentEvent) -> String {
    use schemas::payments::PaymentEvent;
    match event {
        PaymentEvent::Started(e) => format!("started {} {}", e.attempt, e.idempotency_key),
        PaymentEvent::Declined(e) => format!("declined {}", e.attempt),
        PaymentEvent::Created(_) => "charged".into(),
        PaymentEvent::Refunded(_) => "refunded".into(),
    }
}

/// Every payment event of the deployment, in partition order (one order's are in one).
async fn payment_events(log: &platform::log::LogConfig, registry_url: &str) -> Vec<schemas::payments::PaymentEvent> {
    use platform::codec::EventCodec;
    use schemas::events::AvroEvent;
    let topic = log.topic(schemas::payments::PaymentEvent::TOPIC);
    let codec = schemas::codec::AvroCodec::<schemas::payments::PaymentEvent>::new(topic.clone(), schemas::codec::registry_settings(registry_url).unwrap());
    let reader = TopicReader::from_beginning(log, &topic).unwrap();
    let mut records = Vec::new();
    reader.read_until(&reader.end_offsets(), |r| records.push(r)).await.unwrap();
    records.sort_by_key(|r| r.position);
    let mut events = Vec::new();
    for record in records {
        events.push(codec.decode(record.payload.as_deref().unwrap()).await.unwrap().event);
    }
    events
}

/// `ticketing up` aborted right after the gateway charged, before anything recorded the charge
/// (twice: two orders), then started again: the reconciler charges each attempt again with its
/// own key, which charges nothing twice, and records it. One order completes; the other, which
/// a stale writer cancelled meanwhile, gets its charge refunded through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_charge_and_record_is_reconciled_with_no_lost_or_double_charge() {
    use crate::restarts::Up;
    use schemas::payments::PaymentEvent;
    let data = tempfile::tempdir().unwrap();
    let port = platform::local::free_port().unwrap();
    let kafka_port = platform::local::free_port().unwrap();
    let failing = [("TICKETING_FAILPOINT", "after-charge"), ("PAYMENT_RECONCILE_AFTER_SECONDS", "600")];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut orders = Vec::new();
    for round in 0..2 {
        let (up, _) = Up::start_with(data.path(), port, kafka_port, None, &failing).await;
        let (status, ticket) = up.send(Method::POST, "/api/tickets", Some(json!({"title": format!("t{round}"), "price": 7})), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        let ticket = ticket["id"].as_str().unwrap().to_string();
        let (status, order) = up.send_as("buyer", Method::POST, "/api/orders", Some(json!({"ticketId": ticket})), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let order = order["id"].as_str().unwrap().to_string();
        let paid = http
            .post(format!("{}/api/payments", up.base()))
            .header("cookie", crate::helpers::session_cookie("buyer"))
            .json(&json!({"token": "tok_visa", "orderId": order}))
            .send()
            .await;
        assert!(paid.is_err(), "the process died before answering: {paid:?}");
        up.exited().await;
        orders.push((ticket, order));
    }

    // Long enough for the stale writer below to come first.
    let (up, _) = Up::start_with(data.path(), port, kafka_port, None, &[("PAYMENT_RECONCILE_AFTER_SECONDS", "15")]).await;
    let log = platform::log::LogConfig::new(format!("127.0.0.1:{kafka_port}"), "ticketing");
    // A stale writer cancels the second order (created, awaiting payment: this is version 3)
    // before the reconciler gets to it.
    {
        use platform::codec::EventCodec;
        use schemas::events::AvroEvent;
        use schemas::orders::{OrderCancelled, OrderEvent};
        let codec = schemas::codec::AvroCodec::<OrderEvent>::new(log.topic(OrderEvent::TOPIC), schemas::codec::registry_settings(up.base()).unwrap());
        let (ticket, order) = &orders[1];
        let envelope = platform::aggregate::Envelope {
            metadata: platform::aggregate::EventMetadata {
                event_id: uuid::Uuid::new_v4(),
                aggregate_id: order.clone(),
                aggregate_version: 3,
                command_id: "stale-cancel".into(),
                command_event_index: 0,
                command_event_count: 1,
                occurred_at: chrono::Utc::now().timestamp_millis(),
                correlation_id: "test".into(),
                causation_id: None,
            },
            event: OrderEvent::Cancelled(OrderCancelled { ticket_id: ticket.clone(), reason: "cancelled".into() }),
        };
        let bytes = codec.encode(&envelope).await.unwrap();
        LogProducer::new(&log).unwrap().append(codec.topic(), order.as_bytes(), &bytes, &[("event_type", b"OrderCancelled")]).await.unwrap();
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (complete, cancelled) = loop {
        let (_, first) = up.send_as("buyer", Method::GET, &format!("/api/orders/{}", orders[0].1), None, &[]).await;
        let (_, second) = up.send_as("buyer", Method::GET, &format!("/api/orders/{}", orders[1].1), None, &[]).await;
        let events = payment_events(&log, up.base()).await;
        let refunded = events.iter().any(|e| matches!(e, PaymentEvent::Refunded(_)));
        if first["status"] == "complete" && refunded {
            break (first, second);
        }
        assert!(std::time::Instant::now() < deadline, "not reconciled: {first} {second} {:?}", events.iter().map(describe).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(complete["status"], "complete");
    assert_eq!(cancelled["status"], "cancelled");
    let events = payment_events(&log, up.base()).await;
    let charges: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            PaymentEvent::Created(c) => Some(c.charge_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(charges.len(), 2, "each order charged once, recorded once: {:?}", events.iter().map(describe).collect::<Vec<_>>());
    let refunds: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            PaymentEvent::Refunded(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].order_id, orders[1].1, "the cancelled order's charge went back");
    // The completed order's ticket is sold; the cancelled one's is for sale again.
    let (_, listed) = up.send(Method::GET, "/api/tickets", None, &[]).await;
    let ids: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|t| t["id"].as_str()).collect();
    assert!(!ids.contains(&orders[0].0.as_str()) && ids.contains(&orders[1].0.as_str()), "{listed}");
    up.stop().await;
}
