use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use platform::arbiter::{Verdict, VersionArbiter};
use reqwest::{Method, StatusCode};
use schemas::tickets::TicketEvent;
use serde_json::json;
use ticketing::app::Component;

use crate::helpers::{Deployment, TestApp, TestBroker, read_ticket_log};

both_stores! {
async fn of_twenty_concurrent_puts_with_one_if_match_exactly_one_wins_across_two_instances() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let first = deployment.spawn().await;
    let mut settings = deployment.settings();
    settings.registry_url = Some(first.registry_url());
    let second = TestApp::start(settings, &[Component::Tickets]).await;

    // Both instances have joined the command group and agree on who owns which partition.
    for attempt in 0.. {
        let a = first.request(Method::GET, "/readyz", None, None).await.body["owners"]["tickets"].clone();
        let b = second.request(Method::GET, "/readyz", None, None).await.body["owners"]["tickets"].clone();
        let owners: std::collections::HashSet<String> =
            a.as_object().map(|m| m.values().map(|v| v.to_string()).collect()).unwrap_or_default();
        if a == b && a.as_object().is_some_and(|m| m.len() == 3) && owners.len() == 2 {
            break;
        }
        assert!(attempt < 300, "the instances never agreed on partition owners: {a} vs {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let id = first.create_ticket("alice", "concert", 20.0).await.id();
    // Wait until the second instance has read the ticket: it then answers 409, not 404.
    let probe = json!({"title": "probe", "price": 1});
    for attempt in 0.. {
        let reply = second
            .send(Method::PUT, &format!("/api/tickets/{id}"), Some("alice"), Some(probe.clone()), &[("if-match", "99".into())])
            .await;
        if reply.status == StatusCode::CONFLICT {
            break;
        }
        assert!(attempt < 100, "the second instance never saw the ticket: {reply:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let puts = (0..20).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        let path = format!("/api/tickets/{id}");
        async move {
            app.send(
                Method::PUT,
                &path,
                Some("alice"),
                Some(json!({"title": format!("title {i}"), "price": 30})),
                &[("if-match", "0".into())],
            )
            .await
        }
    });
    let replies = join_all(puts).await;
    let mut by_status: HashMap<StatusCode, usize> = HashMap::new();
    for reply in &replies {
        *by_status.entry(reply.status).or_default() += 1;
    }
    assert_eq!(by_status.get(&StatusCode::OK), Some(&1), "{by_status:?}");
    assert_eq!(by_status.get(&StatusCode::CONFLICT), Some(&19), "{by_status:?}");
    let winner = replies.iter().find(|r| r.status == StatusCode::OK).unwrap();

    // The log holds exactly one new valid version, and it is the winner's. The commands meet at
    // the partition's owner, so losers normally never reach the log; when a forward fails (an
    // owner slow to answer on a loaded machine) the sender runs the command itself, and the
    // arbiter then judges its record a duplicate of version 2.
    let events = read_ticket_log(&deployment.log(), &first.registry_url()).await;
    let records: Vec<i64> = events.iter().filter(|e| e.metadata.aggregate_id == id).map(|e| e.metadata.aggregate_version).collect();
    assert!(records.len() >= 2 && records[..2] == [1, 2] && records[2..].iter().all(|v| *v == 2), "{records:?}");
    let mut arbiter = VersionArbiter::default();
    let valid: Vec<_> = events
        .iter()
        .filter(|e| e.metadata.aggregate_id == id)
        .filter(|e| arbiter.admit(&e.metadata) == Verdict::Valid)
        .collect();
    assert_eq!(valid.len(), 2, "created + one update");
    match &valid[1].event {
        TicketEvent::Updated(update) => assert_eq!(update.title, winner.body["title"].as_str().unwrap()),
        other => panic!("unexpected {other:?}"),
    }

    second.stop().await;
    first.stop().await;
}
}
