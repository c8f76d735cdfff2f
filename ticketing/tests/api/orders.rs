use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use ticketing::app::Component;

use crate::helpers::{Deployment, TestApp, TestBroker};

const LONG: Duration = Duration::from_secs(10);

both_stores! {
async fn ordering_reserves_the_ticket_and_cancelling_releases_it() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let ticket = app.create_ticket("seller", "concert", 20.0).await;
    let ticket_id = ticket.id();

    let order = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": ticket_id}))).await;
    assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
    assert_eq!(order.body["status"], "created");
    assert_eq!(order.body["userId"], "buyer");
    assert_eq!(order.body["ticket"], json!({"id": ticket_id, "title": "concert", "price": 20.0, "currency": "USD"}));
    assert_eq!(order.body["version"], 0);
    let expires_at = chrono::DateTime::parse_from_rfc3339(order.body["expiresAt"].as_str().unwrap()).unwrap();
    let window = expires_at.timestamp() - chrono::Utc::now().timestamp();
    assert!((895..=900).contains(&window), "expiresAt is 15 minutes ahead: {window}");
    let order_id = order.id();

    // The reservation is a tickets event: the order's token does not cover it.
    app.eventually(&format!("/api/tickets/{ticket_id}"), None, LONG, |r| r.body["orderId"] == order_id.as_str()).await;
    let listed = app.request(Method::GET, "/api/tickets", None, None).await;
    assert!(listed.body.as_array().unwrap().iter().all(|t| t["id"] != ticket_id.as_str()), "a reserved ticket is not listed");

    let second = app.request(Method::POST, "/api/orders", Some("other"), Some(json!({"ticketId": ticket_id}))).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.body["errors"][0]["message"], "Ticket is already reserved");
    let edit = app
        .request(Method::PUT, &format!("/api/tickets/{ticket_id}"), Some("seller"), Some(json!({"title": "x", "price": 1})))
        .await;
    assert_eq!(edit.status, StatusCode::BAD_REQUEST);
    assert_eq!(edit.body["errors"][0]["message"], "Cannot edit a reserved ticket");

    let mine = app.get_after_as("/api/orders", Some("buyer"), &order).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(mine.body, json!([order.body]));
    let theirs = app.request(Method::GET, "/api/orders", Some("other"), None).await;
    assert_eq!(theirs.body, json!([]));
    assert_eq!(app.request(Method::GET, "/api/orders", None, None).await.status, StatusCode::UNAUTHORIZED);
    let path = format!("/api/orders/{order_id}");
    assert_eq!(app.request(Method::GET, &path, Some("buyer"), None).await.body, order.body);
    assert_eq!(app.request(Method::GET, &path, Some("other"), None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.request(Method::GET, "/api/orders/nope", Some("buyer"), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.request(Method::DELETE, &path, Some("other"), None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.request(Method::DELETE, "/api/orders/nope", Some("buyer"), None).await.status, StatusCode::NOT_FOUND);

    let missing = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({}))).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["errors"][0], json!({"message": "TicketId must be provided", "field": "ticketId"}));
    let unknown = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": "no-such-ticket"}))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let cancelled = app.request(Method::DELETE, &path, Some("buyer"), None).await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    let shown = app.get_after_as(&path, Some("buyer"), &cancelled).await;
    assert_eq!(shown.status, StatusCode::OK, "{shown:?}");
    let shown = app.eventually(&path, Some("buyer"), LONG, |r| r.body["status"] == "cancelled").await;
    assert_eq!(shown.body["version"], 1);
    app.eventually("/api/tickets", None, LONG, |r| r.body.as_array().unwrap().iter().any(|t| t["id"] == ticket_id.as_str()))
        .await;
    let again = app.request(Method::POST, "/api/orders", Some("other"), Some(json!({"ticketId": ticket_id}))).await;
    assert_eq!(again.status, StatusCode::CREATED, "a released ticket can be ordered again: {again:?}");
    app.stop().await;
}
}

both_stores! {
async fn of_sixteen_concurrent_orders_for_one_ticket_over_two_instances_exactly_one_wins() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let first = deployment.spawn().await;
    let mut settings = deployment.settings();
    settings.registry_url = Some(first.registry_url());
    let second = TestApp::start(settings, &[Component::Orders]).await;
    let ticket_id = first.create_ticket("seller", "final", 99.0).await.id();
    // The second instance knows the ticket's owner (it forwards reservations there).
    first.wait_until_ready().await;
    for _ in 0..100 {
        let ready = second.request(Method::GET, "/readyz", None, None).await;
        if ready.body["checks"]["orders_owners"] == true && ready.body["owners"]["tickets"].as_object().is_some_and(|m| m.len() == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let orders = (0..16).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        let ticket_id = ticket_id.clone();
        async move {
            app.request(Method::POST, "/api/orders", Some(&format!("buyer{i}")), Some(json!({"ticketId": ticket_id})))
                .await
        }
    });
    let replies = join_all(orders).await;
    let created = replies.iter().filter(|r| r.status == StatusCode::CREATED).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status == StatusCode::BAD_REQUEST).collect();
    assert_eq!(created, 1, "{replies:?}");
    assert_eq!(refused.len(), 15, "{replies:?}");
    assert!(refused.iter().all(|r| r.body["errors"][0]["message"] == "Ticket is already reserved"));
    second.stop().await;
    first.stop().await;
}
}

both_stores! {
async fn the_same_idempotency_key_places_one_order_and_gives_the_same_answer() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let ticket_id = app.create_ticket("seller", "once", 10.0).await.id();
    let key = [("idempotency-key", "checkout-7".to_string())];
    let body = json!({"ticketId": ticket_id});
    let first = app.send(Method::POST, "/api/orders", Some("buyer"), Some(body.clone()), &key).await;
    let second = app.send(Method::POST, "/api/orders", Some("buyer"), Some(body), &key).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(second.status, StatusCode::CREATED, "{second:?}");
    assert_eq!(first.body, second.body);
    let mine = app.get_after_as("/api/orders", Some("buyer"), &second).await;
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
    app.stop().await;
}
}
