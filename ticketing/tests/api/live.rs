//! `GET /api/live`: what a signed-in user sees change without asking again.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Deployment, TestApp, TestBroker, session_cookie};

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct LiveEvent {
    name: String,
    id: Option<String>,
    data: Value,
}

/// Reads a `text/event-stream` answer event by event, as a browser's EventSource does.
struct LiveStream {
    response: reqwest::Response,
    buffer: String,
}

impl LiveStream {
    async fn open(app: &TestApp, user: &str, last_event_id: Option<&str>) -> Result<Self, reqwest::Response> {
        // No overall timeout: the stream stays open; each read has its own.
        let client = reqwest::Client::new();
        let mut request = client.get(format!("{}/api/live", app.base)).header("cookie", session_cookie(user));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("answered");
        if response.status() != StatusCode::OK {
            return Err(response);
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Ok(Self { response, buffer: String::new() })
    }

    /// The next event (keep-alive comments skipped), failing after `limit`.
    async fn next(&mut self, limit: Duration) -> LiveEvent {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = LiveEvent { name: "message".into(), id: None, data: Value::Null };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event.name = name.trim().to_string();
                    } else if let Some(id) = line.strip_prefix("id:") {
                        event.id = Some(id.trim().to_string());
                    } else if let Some(part) = line.strip_prefix("data:") {
                        data.push_str(part.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                event.data = serde_json::from_str(&data).expect("data is JSON");
                return event;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event within the limit")
                .expect("the stream stays readable")
                .expect("the stream stays open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event named `name` whose data matches `check`, skipping others.
    async fn next_where(&mut self, name: &str, check: impl Fn(&Value) -> bool) -> LiveEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline - tokio::time::Instant::now();
            let event = self.next(left).await;
            if event.name == name && check(&event.data) {
                return event;
            }
        }
    }

    /// Every event arriving within `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Vec<LiveEvent> {
        let mut events = Vec::new();
        loop {
            match tokio::time::timeout(quiet, self.next(quiet * 2)).await {
                Ok(event) => events.push(event),
                Err(_) => return events,
            }
        }
    }
}

fn is(id: &str) -> impl Fn(&Value) -> bool + '_ {
    move |data| data["id"] == id
}

both_stores! {
async fn a_signed_in_user_sees_tickets_and_their_own_orders_change_and_resumes_after_a_reconnect() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let mut buyer = LiveStream::open(&app, "buyer", None).await.unwrap();
    let ready = buyer.next(Duration::from_secs(10)).await;
    assert_eq!(ready.name, "ready");
    assert!(ready.id.is_some(), "the first event already has an id to resume from");
    let mut other = LiveStream::open(&app, "other", None).await.unwrap();
    assert_eq!(other.next(Duration::from_secs(10)).await.name, "ready");

    // Listed: everyone sees the ticket as the read route shows it.
    let ticket = app.create_ticket("seller", "concert", 20.0).await;
    let ticket_id = ticket.id();
    let listed = buyer.next_where("ticket", is(&ticket_id)).await;
    assert_eq!(listed.data, app.get_after(&format!("/api/tickets/{ticket_id}"), &ticket).await.body);
    assert_eq!(listed.data["orderId"], Value::Null);
    other.next_where("ticket", is(&ticket_id)).await;

    // Ordered: the buyer sees the order and everyone the ticket reserved.
    let order = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": ticket_id}))).await;
    assert_eq!(order.status, StatusCode::CREATED);
    let order_id = order.id();
    // The two topics' changes come in either order.
    let reserves = |d: &Value| d["id"] == ticket_id.as_str() && d["orderId"] == order_id.as_str();
    let (mut created, mut buyer_saw_reserved) = (None, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while created.is_none() || !buyer_saw_reserved {
        let event = buyer.next(deadline - tokio::time::Instant::now()).await;
        match event.name.as_str() {
            "order" if is(&order_id)(&event.data) => created = Some(event),
            "ticket" if reserves(&event.data) => buyer_saw_reserved = true,
            _ => {}
        }
    }
    let created = created.expect("seen above");
    assert_eq!(created.data, order.body);
    let reserved = other.next_where("ticket", reserves).await;
    assert_eq!(reserved.data["orderId"], order_id.as_str());

    // The buyer's connection drops; the order is cancelled meanwhile.
    let resume_from = created.id.clone().expect("an id");
    drop(buyer);
    let cancel = app.request(Method::DELETE, &format!("/api/orders/{order_id}"), Some("buyer"), None).await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT);
    // Another user never sees the buyer's order, only the ticket coming back.
    let released = other.next_where("ticket", |d| d["id"] == ticket_id.as_str() && d["orderId"].is_null()).await;
    assert!(released.id.is_some());
    let seen_by_other = other.drain(Duration::from_millis(500)).await;
    assert!(seen_by_other.iter().all(|e| e.name != "order"), "{seen_by_other:?}");

    // Resumed with the last id received: what happened while away arrives, once.
    let mut resumed = LiveStream::open(&app, "buyer", Some(&resume_from)).await.unwrap();
    assert_eq!(resumed.next(Duration::from_secs(10)).await.name, "ready");
    let cancelled = resumed.next_where("order", is(&order_id)).await;
    assert_eq!(cancelled.data["status"], "cancelled");
    assert_eq!(cancelled.data, app.request(Method::GET, &format!("/api/orders/{order_id}"), Some("buyer"), None).await.body);
    let rest = resumed.drain(Duration::from_millis(500)).await;
    assert!(
        rest.iter().all(|e| !(e.name == "order" && e.data["id"] == order_id.as_str())),
        "no change comes twice: {rest:?}"
    );

    // An id from before what this process holds (here: another deployment's first) resets.
    let mut stale = LiveStream::open(&app, "buyer", Some("tickets:0:-5,orders:0:-5")).await.unwrap();
    assert_eq!(stale.next(Duration::from_secs(10)).await.name, "ready");
    assert_eq!(stale.next(Duration::from_secs(10)).await.name, "reset");
    app.stop().await;
}
}

#[tokio::test]
async fn streams_are_for_signed_in_users_and_bounded_per_user() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn_with(|s| s.live.per_user = 2).await;
    let anonymous = app.request(Method::GET, "/api/live", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    anonymous.assert_error_shape();
    let garbage = LiveStream::open(&app, "u", Some("not an id")).await.err().expect("refused");
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);

    let first = LiveStream::open(&app, "u", None).await.unwrap();
    let _second = LiveStream::open(&app, "u", None).await.unwrap();
    let third = LiveStream::open(&app, "u", None).await.err().expect("over the bound");
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key("retry-after"));
    let _someone_else = LiveStream::open(&app, "v", None).await.unwrap();
    // A closed stream gives its place back.
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        match LiveStream::open(&app, "u", None).await {
            Ok(stream) => {
                again = Some(stream);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(again.is_some(), "the closed stream's place is given back");
    app.stop().await;
}

#[tokio::test]
async fn an_unpaid_order_turns_cancelled_on_the_stream_at_its_deadline() {
    let broker = TestBroker::start().await;
    let mut deployment = Deployment::new(&broker).await;
    deployment.expiration_window_seconds = 3;
    let app = deployment.spawn().await;
    let mut buyer = LiveStream::open(&app, "buyer", None).await.unwrap();
    let ticket = app.create_ticket("seller", "late show", 5.0).await.id();
    let order = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": ticket}))).await;
    let order_id = order.id();
    let created = buyer.next_where("order", is(&order_id)).await;
    assert_eq!(created.data["status"], "created");
    let expired = buyer.next_where("order", |d| d["id"] == order_id.as_str() && d["status"] != "created").await;
    assert_eq!(expired.data["status"], "cancelled");
    app.stop().await;
}
