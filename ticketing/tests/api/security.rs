//! Refusals an attacker meets: the internal listener and its peer tokens, and sign-in
//! throttling (by account and by client address, through trusted proxies only).

use platform::peer::{PEER_TOKEN_HEADER, PeerKeys};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Deployment, JWT_KEY, Reply, TestApp, TestBroker, session_cookie};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn post_raw(app: &TestApp, url: String, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
    let mut request = app.client.post(url).header("content-type", "application/json").body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    Reply::from(request.send().await.expect("the request is answered")).await
}

#[tokio::test]
async fn forwarding_is_served_only_internally_checked_before_the_body_and_its_tokens_are_no_sessions() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let internal = app.internal.clone().expect("the command services listen internally");
    assert_ne!(internal, app.base, "the internal listener has its own port");
    let peers = PeerKeys::from_secret(JWT_KEY.as_bytes());
    let peer = peers.mint(now());
    let forward = |base: &str| format!("{base}/internal/commands/tickets");

    // The public port does not serve forwarding, even to a valid peer token.
    let public = post_raw(&app, forward(&app.base), &[(PEER_TOKEN_HEADER, peer.clone())], b"{}".to_vec()).await;
    assert_eq!(public.status, StatusCode::NOT_FOUND, "{public:?}");
    // Nor does the internal listener serve public routes.
    let listed = app.client.get(format!("{internal}/api/tickets")).send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::NOT_FOUND);

    // Without a peer token the body is never looked at: garbage and an oversized body alike
    // are refused as unauthorised, not as bad JSON or too large.
    let garbage = post_raw(&app, forward(&internal), &[], b"{not json".to_vec()).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED, "{garbage:?}");
    let huge = post_raw(&app, forward(&internal), &[], vec![b'x'; 300 * 1024]).await;
    assert_eq!(huge.status, StatusCode::UNAUTHORIZED, "{huge:?}");
    // A user's session is no peer token, as a cookie or as a bearer token.
    let user = session_cookie("3f1c0e4e-8d7b-4a61-9c55-0a9a5b6c7d8e");
    let as_cookie = post_raw(&app, forward(&internal), &[("cookie", user.clone())], b"{}".to_vec()).await;
    assert_eq!(as_cookie.status, StatusCode::UNAUTHORIZED);
    let session = platform::session::SessionKeys::new(JWT_KEY.as_bytes(), 3600, false).mint("u1", "a@b.c", now());
    let as_peer_header = post_raw(&app, forward(&internal), &[(PEER_TOKEN_HEADER, session.clone())], b"{}".to_vec()).await;
    assert_eq!(as_peer_header.status, StatusCode::UNAUTHORIZED);
    // A peer token of a few seconds ago is dead.
    let expired = peers.mint(now() - 60);
    let late = post_raw(&app, forward(&internal), &[(PEER_TOKEN_HEADER, expired)], b"{}".to_vec()).await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    // A live peer token gets as far as the body.
    let parsed = post_raw(&app, forward(&internal), &[(PEER_TOKEN_HEADER, peer.clone())], b"{not json".to_vec()).await;
    assert!(parsed.status.is_client_error() && parsed.status != StatusCode::UNAUTHORIZED, "{parsed:?}");

    // A peer token is no session on the public routes.
    let bearer = [("authorization", format!("Bearer {peer}"))];
    let me = app.send(Method::GET, "/api/users/currentuser", None, None, &bearer).await;
    assert_eq!(me.body, json!({"currentUser": null}));
    let sell = app
        .send(Method::POST, "/api/tickets", None, Some(json!({"title": "gig", "price": 5})), &bearer)
        .await;
    assert_eq!(sell.status, StatusCode::UNAUTHORIZED, "{sell:?}");
    app.stop().await;
}

/// Sign-in from `address` (as the trusted proxy in front of the app reports it).
async fn sign_in_from(app: &TestApp, address: &str, email: &str, password: &str) -> Reply {
    let body = json!({"email": email, "password": password});
    app.send(Method::POST, "/api/users/signin", None, Some(body), &[("x-forwarded-for", address.to_string())])
        .await
}

fn assert_throttled(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{reply:?}");
    let wait: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a 429 says when to retry");
    assert!((1..=3600).contains(&wait), "Retry-After {wait}");
    assert!(reply.body["errors"][0]["message"].is_string(), "{reply:?}");
}

/// The default bursts, refilled slowly enough that no token comes back during the test on a
/// busy machine (the defaults refill the address and pair buckets within minutes).
fn test_limits() -> users_command::throttle::SignInLimits {
    let limit = |spec| platform::throttle::parse_rate_limit(spec).unwrap();
    users_command::throttle::SignInLimits {
        per_address: limit("30/2h"),
        per_account_address: limit("5/1h"),
        per_account: limit("20/4h"),
    }
}

#[tokio::test]
async fn guessing_passwords_is_throttled_and_never_locks_the_owner_out() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    // The test client connects from 127.0.0.1: here it plays the proxy in front of the app.
    let app = deployment
        .spawn_with(|s| {
            s.sign_in_limits = test_limits();
            s.trusted_proxies = "127.0.0.1".parse().unwrap();
        })
        .await;
    let owner_address = "198.51.100.10";
    let signed_up = app
        .send(
            Method::POST,
            "/api/users/signup",
            None,
            Some(json!({"email": "victim@example.com", "password": "right-one"})),
            &[("x-forwarded-for", owner_address.to_string())],
        )
        .await;
    assert_eq!(signed_up.status, StatusCode::CREATED, "{signed_up:?}");
    assert_eq!(sign_in_from(&app, owner_address, "victim@example.com", "right-one").await.status, StatusCode::OK);

    // One attacker, one address: five guesses are answered, then 429 with Retry-After, even
    // for the right password from there.
    let attacker = "203.0.113.66";
    for _ in 0..5 {
        let wrong = sign_in_from(&app, attacker, "victim@example.com", "guess").await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{wrong:?}");
    }
    for _ in 0..35 {
        assert_throttled(&sign_in_from(&app, attacker, "victim@example.com", "guess").await);
    }
    assert_throttled(&sign_in_from(&app, attacker, "victim@example.com", "right-one").await);
    // The owner, elsewhere, is not affected.
    assert_eq!(sign_in_from(&app, owner_address, "victim@example.com", "right-one").await.status, StatusCode::OK);

    // Guesses from many addresses drain the account: 20 failures an hour from addresses it
    // never signed in from (the first attacker's five count too), then new addresses wait…
    for n in 0..15 {
        let wrong = sign_in_from(&app, &format!("192.0.2.{n}"), "victim@example.com", "guess").await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "guess {n}: {wrong:?}");
    }
    assert_throttled(&sign_in_from(&app, "192.0.2.200", "victim@example.com", "guess").await);
    // …while the owner still signs in from their own address.
    assert_eq!(sign_in_from(&app, owner_address, "victim@example.com", "right-one").await.status, StatusCode::OK);

    // One address trying many accounts (password spraying) is limited across them all.
    let sprayer = "198.51.100.99";
    for n in 0..30 {
        let wrong = sign_in_from(&app, sprayer, &format!("someone{n}@example.com"), "guess").await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "attempt {n}: {wrong:?}");
    }
    assert_throttled(&sign_in_from(&app, sprayer, "someone-else@example.com", "guess").await);
    let sign_up = json!({"email": "new@example.com", "password": "secret1"});
    let flood = app
        .send(Method::POST, "/api/users/signup", None, Some(sign_up), &[("x-forwarded-for", sprayer.to_string())])
        .await;
    assert_throttled(&flood);
    app.stop().await;
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    // A proxy is trusted, but not the test client's address.
    let app = deployment
        .spawn_with(|s| {
            s.sign_in_limits = test_limits();
            s.trusted_proxies = "10.0.0.0/8".parse().unwrap();
        })
        .await;
    let mut answers: Vec<Value> = Vec::new();
    for n in 0..6 {
        let reply = sign_in_from(&app, &format!("192.0.2.{n}"), "someone@example.com", "guess").await;
        answers.push(json!(reply.status.as_u16()));
    }
    assert_eq!(answers, vec![json!(400), json!(400), json!(400), json!(400), json!(400), json!(429)]);
    app.stop().await;
}

/// Whether a client of this configuration gets metadata from the broker.
async fn metadata_answered(config: Vec<(&'static str, String)>) -> Result<usize, String> {
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let mut client = rdkafka::ClientConfig::new();
        for (key, value) in &config {
            client.set(*key, value);
        }
        let consumer: BaseConsumer = client.create().map_err(|e| e.to_string())?;
        consumer
            .fetch_metadata(None, std::time::Duration::from_secs(5))
            .map(|m| m.topics().len())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_system_runs_on_a_kafka_that_requires_scram_and_strangers_are_refused() {
    use platform::local::{LocalKafka, SCRAM_MECHANISM, ScramUser};
    let dir = tempfile::tempdir().unwrap();
    let broker_user = ScramUser { name: "broker".into(), password: "broker-secret".into() };
    let app_user = ScramUser { name: "ticketing".into(), password: "app-secret".into() };
    let broker = LocalKafka::start_scram(&dir.path().join("kafka"), 0, &[broker_user, app_user.clone()])
        .await
        .expect("a SCRAM broker starts");
    let bootstrap = broker.bootstrap_servers();

    // Strangers: no authentication at all, and the right user with a wrong password.
    let plaintext = metadata_answered(vec![("bootstrap.servers", bootstrap.clone())]).await;
    assert!(plaintext.is_err(), "a plaintext client got metadata: {plaintext:?}");
    let sasl = |password: &str| {
        vec![
            ("bootstrap.servers", bootstrap.clone()),
            ("security.protocol", "SASL_PLAINTEXT".to_string()),
            ("sasl.mechanism", SCRAM_MECHANISM.to_string()),
            ("sasl.username", app_user.name.clone()),
            ("sasl.password", password.to_string()),
        ]
    };
    let wrong = metadata_answered(sasl("not-the-password")).await;
    assert!(wrong.is_err(), "a wrong password got metadata: {wrong:?}");
    assert!(metadata_answered(sasl(&app_user.password)).await.is_ok());

    // The whole system, configured as the README documents (`KAFKA_PROPERTY_*`).
    let data = dir.path().join("app");
    std::fs::create_dir_all(&data).unwrap();
    let port = platform::local::free_port().unwrap();
    let (up, _) = crate::restarts::Up::start_with(
        &data,
        port,
        0,
        None,
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
            ("KAFKA_PROPERTY_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_PROPERTY_SASL_MECHANISM", SCRAM_MECHANISM),
            ("KAFKA_PROPERTY_SASL_USERNAME", &app_user.name),
            ("KAFKA_PROPERTY_SASL_PASSWORD", &app_user.password),
            ("KAFKA_TOPIC_PARTITIONS", "1"),
        ],
    )
    .await;
    let (status, ticket) = up.send(Method::POST, "/api/tickets", Some(json!({"title": "over scram", "price": 7})), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    let id = ticket["id"].as_str().unwrap().to_string();
    let mut shown = Value::Null;
    for _ in 0..100 {
        let (status, body) = up.send(Method::GET, &format!("/api/tickets/{id}"), None, &[]).await;
        if status == StatusCode::OK {
            shown = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(shown["title"], "over scram", "the projector read the event back over SCRAM");
    up.stop().await;
    broker.stop().await.unwrap();
}

/// Schemathesis of `.venv-schemathesis/`, which `scripts/install-python-clients.sh` (run by the
/// test command) installs.
fn schemathesis() -> std::path::PathBuf {
    let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-schemathesis/bin/schemathesis");
    assert!(tool.exists(), "{} is missing: run scripts/install-python-clients.sh (scripts/test.sh does)", tool.display());
    tool
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_accepts_every_valid_request() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let mut browser = app.browser();
    assert_eq!(browser.signup("property@example.com", "prop-pw-1").await.status, StatusCode::CREATED);
    let cookie = browser.cookie.clone().expect("a session");
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml");
    // Asynchronously: the API it calls is served by this test's own runtime. One worker:
    // Hypothesis's lambda descriptions are not thread-safe on CPython 3.11.
    let output = tokio::process::Command::new(schemathesis())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/api/openapi.json", app.base))
        .args(["--url", &app.base, "-H", &format!("Cookie: {cookie}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,\
             response_schema_conformance,positive_data_acceptance,missing_required_header,ignored_auth",
        ])
        .args(["--max-examples", "50", "--workers", "1", "--seed", "20261202", "--request-timeout", "15"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "schemathesis found failures:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Tested: 14"), "every operation is exercised:\n{stdout}");
    app.stop().await;
}
