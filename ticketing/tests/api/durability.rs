use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Deployment, JWT_KEY, TestApp, TestBroker, remove_dir};

async fn snapshot(app: &TestApp, ids: &[String]) -> (Value, Vec<Value>) {
    let list = app.request(Method::GET, "/api/tickets", None, None).await.body;
    let mut shown = Vec::new();
    for id in ids {
        shown.push(app.request(Method::GET, &format!("/api/tickets/{id}"), None, None).await.body);
    }
    (list, shown)
}

async fn create_some(app: &TestApp) -> (Vec<String>, crate::helpers::Reply) {
    let mut ids = Vec::new();
    let mut last = None;
    for i in 0..5 {
        let created = app.create_ticket("alice", &format!("ticket {i}"), 10.0 + i as f64).await;
        ids.push(created.id());
        last = Some(created);
    }
    let updated = app
        .request(Method::PUT, &format!("/api/tickets/{}", ids[2]), Some("alice"), Some(json!({"title": "changed", "price": 99.99})))
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    drop(last);
    // Wait until the read model holds the last write.
    let _ = app.get_after("/api/tickets", &updated).await;
    (ids, updated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ticket_survives_stopping_and_starting_everything() {
    let mut broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker);
    let app = deployment.spawn().await;
    let (ids, _) = create_some(&app).await;
    let before = snapshot(&app, &ids).await;
    assert_eq!(before.0.as_array().unwrap().len(), 5);
    app.stop().await;
    broker.restart().await;

    let app = deployment.spawn().await;
    assert_eq!(snapshot(&app, &ids).await, before);
    // The command side rebuilt its state from the log: versions continue where they were.
    let updated = app
        .send(
            Method::PUT,
            &format!("/api/tickets/{}", ids[2]),
            Some("alice"),
            Some(json!({"title": "again", "price": 1})),
            &[("if-match", "1".into())],
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{updated:?}");
    assert_eq!(updated.body["version"], 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_after_dropping_the_store_gives_the_same_read_model() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker);
    let app = deployment.spawn().await;
    let (ids, _) = create_some(&app).await;
    let before = snapshot(&app, &ids).await;
    app.stop().await;

    remove_dir(&deployment.store_dir());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(["rebuild", "tickets"])
        .env("KAFKA_BOOTSTRAP_SERVERS", &deployment.bootstrap_servers)
        .env("TICKETING_NAMESPACE", &deployment.namespace)
        .env("TICKETING_DATA_DIR", deployment.data.path())
        .env("JWT_KEY", JWT_KEY)
        .env("KAFKA_ENABLE_IDEMPOTENCE", "false")
        .env_remove("SCHEMA_REGISTRY_URL")
        .env_remove("SCYLLA_URI")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rebuild failed: {stderr}");
    assert!(stderr.contains("6 events replayed, 6 applied"), "{stderr}");

    let app = deployment.spawn().await;
    assert_eq!(snapshot(&app, &ids).await, before);
    app.stop().await;
}
