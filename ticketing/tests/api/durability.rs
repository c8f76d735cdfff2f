use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Deployment, JWT_KEY, TestApp, TestBroker};

async fn snapshot(app: &TestApp, ids: &[String]) -> (Value, Vec<Value>) {
    let list = app.request(Method::GET, "/api/tickets", None, None).await.body;
    let mut shown = Vec::new();
    for id in ids {
        shown.push(app.request(Method::GET, &format!("/api/tickets/{id}"), None, None).await.body);
    }
    (list, shown)
}

async fn orders_snapshot(app: &TestApp, orders: &[(String, String)]) -> Vec<Value> {
    let mut all = Vec::new();
    for (buyer, id) in orders {
        all.push(app.request(Method::GET, "/api/orders", Some(buyer), None).await.body);
        all.push(app.request(Method::GET, &format!("/api/orders/{id}"), Some(buyer), None).await.body);
    }
    all
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

both_stores! {
async fn every_ticket_survives_stopping_and_starting_everything() {
    let mut broker = TestBroker::own().await;
    let deployment = Deployment::new(&broker).await;
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
}

both_stores! {
async fn rebuilding_every_read_model_after_dropping_the_store_gives_the_live_read_models() {
    let broker = TestBroker::start().await;
    let mut deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let (ids, _) = create_some(&app).await;
    // Orders in every state: created, cancelled, complete.
    let mut orders = Vec::new();
    for (i, buyer) in ["ann", "ben", "cat"].iter().enumerate() {
        let order = app.request(Method::POST, "/api/orders", Some(buyer), Some(json!({"ticketId": ids[i]}))).await;
        assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
        orders.push((buyer.to_string(), order.id()));
    }
    let cancel = app.request(Method::DELETE, &format!("/api/orders/{}", orders[1].1), Some("ben"), None).await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT);
    let paid = app
        .request(Method::POST, "/api/payments", Some("cat"), Some(json!({"token": "tok_visa", "orderId": orders[2].1})))
        .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{paid:?}");
    let order_path = |i: usize| format!("/api/orders/{}", orders[i].1);
    app.eventually(&order_path(2), Some("cat"), std::time::Duration::from_secs(10), |r| r.body["status"] == "complete").await;
    app.eventually(&format!("/api/tickets/{}", ids[2]), None, std::time::Duration::from_secs(10), |r| {
        // Created, updated, reserved, sold.
        r.body["orderId"] == orders[2].1.as_str() && r.body["version"] == 3
    })
    .await;
    app.eventually(&order_path(1), Some("ben"), std::time::Duration::from_secs(10), |r| r.body["status"] == "cancelled").await;

    let before = (snapshot(&app, &ids).await, orders_snapshot(&app, &orders).await);
    app.stop().await;

    deployment.drop_store();
    for read_model in ["tickets", "orders"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
            .args(["rebuild", read_model])
            .env("KAFKA_BOOTSTRAP_SERVERS", &deployment.bootstrap_servers)
            .env("TICKETING_NAMESPACE", &deployment.namespace)
            .env("TICKETING_DATA_DIR", deployment.data.path())
            .env("JWT_KEY", JWT_KEY)
            .env_remove("SCHEMA_REGISTRY_URL")
            .env_remove("SCYLLA_URI")
            .envs(deployment.store_env())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "rebuild {read_model} failed: {stderr}");
        assert!(stderr.contains(&format!("Rebuilt {read_model} into namespace")), "{stderr}");
    }

    let app = deployment.spawn().await;
    let after = (snapshot(&app, &ids).await, orders_snapshot(&app, &orders).await);
    assert_eq!(after, before);
    app.stop().await;
}
}
