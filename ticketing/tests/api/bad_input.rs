use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Deployment, Reply, TestBroker, session_cookie};

both_stores! {
async fn bad_input_gets_a_4xx_in_the_error_shape_and_never_a_5xx() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let created = app.create_ticket("alice", "concert", 20.0).await;
    let id = created.id();
    let ticket = format!("/api/tickets/{id}");

    let json_cases = [
        (json!({"title": 5, "price": 10}), "title"),
        (json!({"title": "x", "price": "ten"}), "price"),
        (json!({"title": "x", "price": -1}), "price"),
        (json!({"title": "x", "price": 0}), "price"),
        (json!({"title": "x", "price": 10.005}), "price"),
        (json!({"title": "", "price": 10}), "title"),
        (json!({"title": null, "price": null}), "title"),
        (json!({"price": 10}), "title"),
        (json!([1, 2, 3]), "title"),
        (json!({"title": "x", "price": 1e308}), "price"),
        (json!({"title": "x", "price": 10, "currency": "XYZ"}), "currency"),
        (json!({"title": "x", "price": 10, "currency": 978}), "currency"),
        (json!({"title": "x", "price": 10.5, "currency": "JPY"}), "price"),
    ];
    for path in ["/api/tickets", ticket.as_str()] {
        let method = if path == "/api/tickets" { Method::POST } else { Method::PUT };
        for (body, field) in &json_cases {
            let reply = app.request(method.clone(), path, Some("alice"), Some(body.clone())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {path} {body}: {reply:?}");
            reply.assert_error_shape();
            assert!(
                reply.body["errors"].as_array().unwrap().iter().any(|e| e["field"] == *field),
                "{body}: {reply:?}"
            );
        }
    }
    let both = app.request(Method::POST, "/api/tickets", Some("alice"), Some(json!({}))).await;
    assert_eq!(both.body["errors"].as_array().unwrap().len(), 2, "one entry per bad field: {both:?}");
    assert_eq!(both.body["errors"][0]["message"], "Title is required");

    let raw_cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        ("malformed JSON", b"{\"title\": \"x\", ".to_vec(), StatusCode::BAD_REQUEST),
        ("NaN price", b"{\"title\": \"x\", \"price\": NaN}".to_vec(), StatusCode::BAD_REQUEST),
        ("invalid UTF-8", b"{\"title\": \"\xff\xfe\", \"price\": 10}".to_vec(), StatusCode::BAD_REQUEST),
        ("huge body", format!("{{\"title\": \"{}\", \"price\": 10}}", "x".repeat(200 * 1024)).into_bytes(), StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (name, body, status) in raw_cases {
        let response = app
            .client
            .post(format!("{}/api/tickets", app.base))
            .header("cookie", session_cookie("alice"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let reply = Reply::from(response).await;
        assert_eq!(reply.status, status, "{name}: {reply:?}");
        reply.assert_error_shape();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The unread rest of the body ends the connection; the client must not reuse it.
            assert_eq!(reply.headers["connection"], "close", "{name}: {reply:?}");
        }
    }

    let bad_if_match = app
        .send(Method::PUT, &ticket, Some("alice"), Some(json!({"title": "x", "price": 1})), &[("if-match", "soon".into())])
        .await;
    assert_eq!(bad_if_match.status, StatusCode::BAD_REQUEST);
    bad_if_match.assert_error_shape();

    let unknown_route = app.request(Method::GET, "/api/nothing-here", None, None).await;
    assert_eq!(unknown_route.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown_route.body["errors"][0]["message"], "Not Found");

    let long_id = app.request(Method::GET, &format!("/api/tickets/{}", "x".repeat(5000)), None, None).await;
    assert!(long_id.status.is_client_error(), "{long_id:?}");

    // The API describes itself: every route of the reference app is in the document.
    let openapi = app.request(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(openapi.status, StatusCode::OK);
    for path in ["/api/users/signup", "/api/users/signin", "/api/users/signout", "/api/users/currentuser",
                 "/api/tickets", "/api/tickets/{id}", "/api/orders", "/api/orders/{id}", "/api/payments"] {
        assert!(openapi.body["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }

    // The service is still alive and the ticket untouched. The read carries the creation's
    // token: without it the projector may not have caught up yet (reads are eventual).
    let shown = app.get_after(&ticket, &created).await;
    assert_eq!(shown.body["title"], "concert", "{shown:?}");
    app.stop().await;
}
}

/// A malformed setting stops start-up with a message naming it, before anything starts;
/// nothing falls back to a default silently.
#[test]
fn a_malformed_setting_stops_start_up_naming_it() {
    for (name, value) in [
        ("SESSION_TTL_SECONDS", "abc"),
        ("EXPIRATION_WINDOW_SECONDS", "-5"),
        ("COOKIE_SECURE", "maybe"),
        ("TICKETING_STORE", "mongo"),
        ("STRIPE_API_BASE", "ftp://example.com"),
        ("STRIPE_PUBLISHABLE_KEY", "pk_nope"),
        ("LIVE_STREAMS_PER_USER", "0"),
        ("TICKETING_MAX_IN_FLIGHT", "0"),
        ("TICKETING_ADDR", "not-an-address"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
            .arg("init")
            .env(name, value)
            .env("TICKETING_DATA_DIR", std::env::temp_dir().join("ticketing-config-test"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}={value} was accepted");
        assert!(stderr.contains(name), "{name}={value}: the message names the variable: {stderr}");
        assert!(stderr.contains(value), "{name}={value}: the message shows the value: {stderr}");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .arg("init")
        .env("SCYLLA_USERNAME", "someone")
        .env_remove("SCYLLA_PASSWORD")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SCYLLA_PASSWORD"));
}
