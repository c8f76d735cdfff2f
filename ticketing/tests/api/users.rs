use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Deployment, TestBroker};

both_stores! {
async fn a_browser_signs_up_signs_out_and_signs_in_with_cookies_only() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let mut browser = app.browser();

    let signed_up = browser.signup("Alice@Example.com", "  pass1234 ").await;
    assert_eq!(signed_up.status, StatusCode::CREATED, "{signed_up:?}");
    assert_eq!(signed_up.body["email"], "alice@example.com");
    // A command answer: it names the write it made.
    let token = signed_up.headers["x-consistency-token"].to_str().unwrap();
    assert!(token.starts_with("users:"), "{token}");
    let id = signed_up.id();
    let cookie = browser.cookie.clone().expect("signup sets the session cookie");
    assert!(cookie.starts_with("express:sess="), "{cookie}");

    let me = browser.send(Method::GET, "/api/users/currentuser", None).await;
    assert_eq!(me.body["currentUser"]["id"], id.as_str());
    assert_eq!(me.body["currentUser"]["email"], "alice@example.com");
    assert!(me.body["currentUser"]["iat"].is_i64());

    // The signed-in browser can sell a ticket with nothing but its cookie.
    let ticket = browser.send(Method::POST, "/api/tickets", Some(json!({"title": "gig", "price": 5}))).await;
    assert_eq!(ticket.status, StatusCode::CREATED);
    assert_eq!(ticket.body["userId"], id.as_str());

    let out = browser.send(Method::POST, "/api/users/signout", Some(json!({}))).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.body, json!({}));
    assert!(browser.cookie.is_none(), "signout clears the cookie");
    let me = browser.send(Method::GET, "/api/users/currentuser", None).await;
    assert_eq!(me.body, json!({"currentUser": null}));

    let wrong = browser
        .send(Method::POST, "/api/users/signin", Some(json!({"email": "alice@example.com", "password": "nope"})))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong.body["errors"][0]["message"], "Invalid credentials");
    let unknown = browser
        .send(Method::POST, "/api/users/signin", Some(json!({"email": "bob@example.com", "password": "pass1234"})))
        .await;
    assert_eq!(unknown.body, wrong.body, "unknown email and wrong password look the same");

    let signed_in = browser
        .send(Method::POST, "/api/users/signin", Some(json!({"email": "ALICE@example.com", "password": "pass1234"})))
        .await;
    assert_eq!(signed_in.status, StatusCode::OK, "{signed_in:?}");
    assert_eq!(signed_in.body["id"], id.as_str());
    let me = browser.send(Method::GET, "/api/users/currentuser", None).await;
    assert_eq!(me.body["currentUser"]["id"], id.as_str());
    app.stop().await;
}
}

both_stores! {
async fn an_email_is_used_once_whatever_its_case_and_bad_input_is_named() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let mut browser = app.browser();
    assert_eq!(browser.signup("bob@example.com", "secret").await.status, StatusCode::CREATED);
    let again = app.browser().signup("BOB@example.com", "another").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.body["errors"][0]["message"], "Email in use");

    let bad = app.browser().signup("not-an-email", "abc").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = bad.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["email", "password"]);
    assert_eq!(bad.body["errors"][0]["message"], "Email must be valid");
    assert_eq!(bad.body["errors"][1]["message"], "Password must be between 4 and 20 characters");

    let no_password = app
        .request(Method::POST, "/api/users/signin", None, Some(json!({"email": "bob@example.com", "password": "  "})))
        .await;
    assert_eq!(no_password.body["errors"][0]["message"], "You must supply a password");

    // A forged session is no user at all.
    let forged = app
        .send(Method::GET, "/api/users/currentuser", None, None, &[("cookie", "express:sess=eyJqd3QiOiJhLmIuYyJ9".into())])
        .await;
    assert_eq!(forged.body, json!({"currentUser": null}));
    app.stop().await;
}
}
