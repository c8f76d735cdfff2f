use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Deployment, TestApp, TestBroker};

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
        let output = deployment.tool(&["rebuild", read_model]).output().unwrap();
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

/// A power loss takes the embedded store's unsynced tail while Kafka already holds the
/// projector's committed offsets past it: here, the store's directory goes back to a copy taken
/// before the last writes. The projector resumes from the store's own progress, so the lost
/// rows come back instead of leaving holes for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_resumes_from_the_stores_progress_after_the_store_lost_its_last_writes() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let (kept, _) = create_some(&app).await;
    let before = snapshot(&app, &kept).await;
    app.stop().await;
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&deployment.store_dir(), copy.path());

    let app = deployment.spawn().await;
    let (lost, last) = create_some(&app).await;
    app.get_after(&format!("/api/tickets/{}", lost[4]), &last).await;
    // Wait for the offsets of the lost writes to be committed (every 500 ms), then stop.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    app.stop().await;
    crate::helpers::remove_dir(&deployment.store_dir());
    copy_dir(copy.path(), &deployment.store_dir());

    let app = deployment.spawn().await;
    assert_eq!(snapshot(&app, &kept).await.1, before.1, "what the store kept is unchanged");
    for id in &lost {
        let shown = app.eventually(&format!("/api/tickets/{id}"), None, std::time::Duration::from_secs(15), |r| r.status == StatusCode::OK).await;
        assert_eq!(shown.body["id"], id.as_str());
    }
    let listed = app.request(Method::GET, "/api/tickets", None, None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 10, "{listed:?}");
    app.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `ticketing rebuild` while writers keep updating tickets (the embedded store is one process's,
/// so this runs on the CQL store): every write read back with its token shows that write (a
/// token is never reported reached before its row is there), and once the writers stop, the
/// namespace the rebuild switched to equals a replay of the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_under_live_writes_loses_nothing_and_no_token_runs_ahead_of_its_row() {
    crate::helpers::with_store(crate::helpers::StoreKind::Cql, async {
        let broker = TestBroker::start().await;
        let deployment = Deployment::new(&broker).await;
        let app = deployment.spawn().await;
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(app.create_ticket("alice", &format!("ticket {i}"), 10.0).await.id());
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Two writers on disjoint tickets, each writing then reading back with the token,
        // together about 200 commands a second.
        let writer = |offset: usize| {
            let (app, ids, stop, written) = (&app, &ids, stop.clone(), written.clone());
            async move {
                let (mut writes, mut ahead) = (0usize, Vec::new());
                let mut ticker = tokio::time::interval(std::time::Duration::from_millis(10));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    ticker.tick().await;
                    let id = &ids[offset + 2 * (writes % 10)];
                    let title = format!("w{offset}-{writes}");
                    let put = app
                        .request(Method::PUT, &format!("/api/tickets/{id}"), Some("alice"), Some(json!({"title": title, "price": 10})))
                        .await;
                    assert_eq!(put.status, StatusCode::OK, "{put:?}");
                    let shown = app.get_after(&format!("/api/tickets/{id}"), &put).await;
                    if shown.headers.get("x-consistency").is_none() && shown.body["title"] != title.as_str() {
                        ahead.push((title, shown.body));
                    }
                    writes += 1;
                    written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (writes, ahead)
            }
        };
        let rebuild = async {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let before = written.load(std::sync::atomic::Ordering::Relaxed);
            let output = tokio::process::Command::from(deployment.tool(&["rebuild", "tickets"])).output().await.unwrap();
            let during = written.load(std::sync::atomic::Ordering::Relaxed) - before;
            // Writes go on a while after the switch.
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (output, during)
        };
        let ((first, second), (output, during)) = tokio::join!(async { tokio::join!(writer(0), writer(1)) }, rebuild);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "rebuild failed: {stderr}");
        assert!(stderr.contains("Rebuilt tickets into namespace"), "{stderr}");
        // However fast the machine, the rebuild ran under live writes.
        assert!(during > 0, "no write landed while the rebuild ran ({} + {} in all)", first.0, second.0);
        assert!(first.1.is_empty() && second.1.is_empty(), "tokens reported reached before their rows: {:?} {:?}", first.1, second.1);

        // The served namespace equals the log's replay.
        let events = crate::helpers::read_ticket_log(&deployment.log(), &app.registry_url()).await;
        let mut arbiter = platform::arbiter::VersionArbiter::default();
        let mut expected: std::collections::HashMap<String, (String, i64)> = std::collections::HashMap::new();
        for event in &events {
            if arbiter.admit(&event.metadata) != platform::arbiter::Verdict::Valid {
                continue;
            }
            let title = match &event.event {
                schemas::tickets::TicketEvent::Created(e) => e.title.clone(),
                schemas::tickets::TicketEvent::Updated(e) => e.title.clone(),
                _ => continue,
            };
            expected.insert(event.metadata.aggregate_id.clone(), (title, event.metadata.aggregate_version - 1));
        }
        for id in &ids {
            let (title, version) = &expected[id];
            let shown = app
                .eventually(&format!("/api/tickets/{id}"), None, std::time::Duration::from_secs(20), |r| r.body["version"] == *version)
                .await;
            assert_eq!(shown.body["title"], title.as_str(), "{id}: {shown:?}");
        }
        let listed = app.request(Method::GET, "/api/tickets", None, None).await;
        assert_eq!(listed.body.as_array().unwrap().len(), ids.len());
        app.stop().await;
    })
    .await
}
