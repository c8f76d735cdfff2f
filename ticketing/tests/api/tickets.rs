use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Deployment, TestBroker};

both_stores! {
async fn a_created_ticket_is_read_back_at_once_with_the_consistency_token() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;

    let created = app.create_ticket("alice", "concert", 20.0).await;
    assert_eq!(created.body["title"], "concert");
    assert_eq!(created.body["price"], 20.0);
    assert_eq!(created.body["userId"], "alice");
    assert_eq!(created.body["version"], 0);
    let id = created.id();

    let shown = app.get_after(&format!("/api/tickets/{id}"), &created).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body, created.body);
    assert!(shown.headers.get("x-consistency").is_none(), "the first read waited for the write");

    let listed = app.get_after("/api/tickets", &created).await;
    assert_eq!(listed.body.as_array().unwrap(), &vec![created.body.clone()]);

    let updated = app
        .send(
            Method::PUT,
            &format!("/api/tickets/{id}"),
            Some("alice"),
            Some(json!({"title": "opera", "price": 35.5})),
            &[("if-match", "0".into())],
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{updated:?}");
    assert_eq!(updated.body["version"], 1);
    let shown = app.get_after(&format!("/api/tickets/{id}"), &updated).await;
    assert_eq!(shown.body["title"], "opera");
    assert_eq!(shown.body["price"], 35.5);

    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    for expected in [
        r#"ticketing_commands_total{aggregate="tickets",outcome="accepted"}"#,
        r#"ticketing_http_requests_total{route="/api/tickets",method="POST",status="201"}"#,
        r#"ticketing_http_request_duration_seconds_bucket{le="#,
        r#"ticketing_projection_events_total{projection="tickets",result="applied"}"#,
        "ticketing_projector_lag_records{",
    ] {
        assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
    }
    app.stop().await;
}
}

both_stores! {
async fn only_signed_in_owners_change_tickets() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let body = json!({"title": "concert", "price": 10});

    let anonymous = app.request(Method::POST, "/api/tickets", None, Some(body.clone())).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body["errors"][0]["message"], "Not authorized");

    let id = app.create_ticket("alice", "concert", 10.0).await.id();
    let by_bob = app.request(Method::PUT, &format!("/api/tickets/{id}"), Some("bob"), Some(body.clone())).await;
    assert_eq!(by_bob.status, StatusCode::UNAUTHORIZED);

    let forged = app
        .send(Method::POST, "/api/tickets", None, Some(body.clone()), &[("authorization", "Bearer not.a.jwt".into())])
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    let unknown = app.request(Method::PUT, "/api/tickets/no-such-ticket", Some("alice"), Some(body.clone())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["errors"][0]["message"], "Not Found");
    let missing = app.request(Method::GET, "/api/tickets/no-such-ticket", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let stale = app
        .send(Method::PUT, &format!("/api/tickets/{id}"), Some("alice"), Some(body), &[("if-match", "7".into())])
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    stale.assert_error_shape();

    app.stop().await;
}
}

both_stores! {
async fn the_same_idempotency_key_creates_one_ticket_and_gives_the_same_answer() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let body = json!({"title": "concert", "price": 12.5});
    let key = [("idempotency-key", "order-form-42".to_string())];

    let first = app.send(Method::POST, "/api/tickets", Some("alice"), Some(body.clone()), &key).await;
    let second = app.send(Method::POST, "/api/tickets", Some("alice"), Some(body.clone()), &key).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.body, second.body);
    assert_eq!(first.consistency_token, second.consistency_token);

    // The key is scoped to the user: bob's form with the same key is another ticket.
    let bobs = app.send(Method::POST, "/api/tickets", Some("bob"), Some(body), &key).await;
    assert_ne!(bobs.id(), first.id());

    let listed = app.get_after("/api/tickets", &bobs).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
    app.stop().await;
}
}

both_stores! {
async fn the_list_answers_the_most_recently_listed_tickets_for_sale_oldest_first_up_to_its_limit() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn_with(|settings| settings.tickets_list_limit = 3).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_ticket("alice", &format!("ticket {i}"), 10.0).await);
    }
    let reserved = app.request(Method::POST, "/api/orders", Some("bob"), Some(json!({"ticketId": created[4].id()}))).await;
    assert_eq!(reserved.status, StatusCode::CREATED, "{reserved:?}");

    // The newest three for sale once the reservation is projected; the reserved one is not.
    let titles = |r: &crate::helpers::Reply| -> Vec<String> {
        r.body.as_array().map(|l| l.iter().map(|t| t["title"].as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default()
    };
    let expected = vec!["ticket 1".to_string(), "ticket 2".to_string(), "ticket 3".to_string()];
    app.eventually("/api/tickets", None, std::time::Duration::from_secs(10), |r| titles(r) == expected).await;
    app.stop().await;
}
}

both_stores! {
async fn the_list_is_reused_for_a_while_but_never_hides_a_clients_own_write() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn_with(|settings| settings.tickets_list_cache_ms = 60_000).await;
    let first = app.create_ticket("alice", "first", 10.0).await;
    let listed = app.get_after("/api/tickets", &first).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    // Read without a token: this list is now the cached one.
    let cached = app.request(Method::GET, "/api/tickets", None, None).await;

    let second = app.create_ticket("alice", "second", 10.0).await;
    let _ = app.get_after(&format!("/api/tickets/{}", second.id()), &second).await;
    let without_token = app.request(Method::GET, "/api/tickets", None, None).await;
    assert_eq!(without_token.body, cached.body, "a client without a token may get the list as read a moment ago");
    let with_token = app.get_after("/api/tickets", &second).await;
    let titles: Vec<&str> = with_token.body.as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, vec!["first", "second"], "the writer's token always reads past the cache");
    app.stop().await;
}
}
