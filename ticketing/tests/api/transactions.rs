//! The events of one command reach `read_committed` readers all together or not at all.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use platform::aggregate::{Envelope, EventMetadata};
use platform::codec::EventCodec;
use platform::command::writer_transactional_id;
use platform::log::{LogConfig, OutgoingRecord, TransactionalProducer};
use platform::ownership::partition_for;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use reqwest::{Method, StatusCode};
use schemas::events::AvroEvent;
use schemas::tickets::{TicketEvent, TicketUpdated};
use serde_json::json;
use ticketing::app::Component;

use crate::helpers::{Deployment, TestApp, TestBroker, committed_commands, read_ticket_log, ticket_codec};

/// The variable that turns this test binary into the writer that dies mid-transaction.
const WRITER: &str = "TICKETING_TEST_HALF_WRITER";

/// Every record of a topic as a `read_uncommitted` reader sees it (aborted ones included).
fn read_uncommitted(log: &LogConfig, topic: &str) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &log.bootstrap_servers)
        .set("group.id", format!("uncommitted-{}", uuid::Uuid::new_v4()))
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).unwrap();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for partition in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(5)).unwrap();
        remaining += high - low;
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Control records count in the watermarks but are never delivered: stop when idle.
    while remaining > 0 && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                values.push(message.payload().unwrap_or_default().to_vec());
                remaining -= 1;
            }
            Some(Err(error)) => panic!("{error}"),
            None if !values.is_empty() => break,
            None => {}
        }
    }
    values
}

both_stores! {
async fn a_reservation_that_replaces_a_lapsed_hold_is_one_transaction_of_two_events() {
    let broker = TestBroker::start().await;
    let mut deployment = Deployment::new(&broker).await;
    deployment.expiration_window_seconds = 1;
    // No expiration worker: the first hold lapses without being released.
    let components: Vec<Component> = Component::ALL.into_iter().filter(|c| *c != Component::Expiration).collect();
    let app = TestApp::start(deployment.settings(), &components).await;
    let ticket = app.create_ticket("seller", "lapsing", 5.0).await.id();
    let first = app.request(Method::POST, "/api/orders", Some("ann"), Some(json!({"ticketId": ticket}))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let second = app.request(Method::POST, "/api/orders", Some("ben"), Some(json!({"ticketId": ticket}))).await;
    assert_eq!(second.status, StatusCode::CREATED, "{second:?}");
    let shown = app
        .eventually(&format!("/api/tickets/{ticket}"), None, Duration::from_secs(10), |r| r.body["orderId"] == second.id().as_str())
        .await;
    assert_eq!(shown.body["version"], 3, "created, reserved, released, reserved again: {shown:?}");

    let events: Vec<(i64, &'static str)> = read_ticket_log(&deployment.log(), &app.registry_url())
        .await
        .into_iter()
        .filter(|e| e.metadata.aggregate_id == ticket)
        .map(|e| (e.metadata.aggregate_version, e.event.event_type()))
        .collect();
    assert_eq!(events, vec![(1, "TicketCreated"), (2, "TicketReserved"), (3, "TicketReleased"), (4, "TicketReserved")]);
    app.stop().await;
}
}

both_stores! {
async fn a_command_whose_writer_dies_between_its_events_leaves_nothing_visible() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let ticket = app.create_ticket("seller", "before", 5.0).await.id();
    let log = deployment.log();

    // A writer with the identity of the ticket's partition's writer appends the first of two
    // events in a transaction, then is killed before the second and the commit.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "transactions::half_writer", "--nocapture", "--test-threads=1"])
        .env(WRITER, serde_json::to_string(&json!({
            "servers": log.bootstrap_servers,
            "namespace": log.namespace,
            "partitions": log.partitions,
            "registry": app.registry_url(),
            "ticket": ticket,
        })).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let written = lines.any(|line| line.is_ok_and(|l| l.contains("HALF-WRITTEN")));
    assert!(written, "the writer did not report its first event");
    child.kill().unwrap();
    child.wait().unwrap();

    let topic = log.topic(TicketEvent::TOPIC);
    let raw = read_uncommitted(&log, &topic);
    assert!(raw.iter().any(|v| v.windows(4).any(|w| w == b"half")), "the first event did reach the log");

    // Once the broker has aborted the dead writer's transaction (its timeout), the command side
    // decides on the state without the half-written event.
    let deadline = Instant::now() + platform::log::TRANSACTION_TIMEOUT + Duration::from_secs(20);
    let updated = loop {
        // One idempotency key: an attempt that timed out behind the open transaction may still
        // have been appended, and its retry must not apply it twice.
        let reply = app
            .send(
                Method::PUT,
                &format!("/api/tickets/{ticket}"),
                Some("seller"),
                Some(json!({"title": "after", "price": 6})),
                &[("idempotency-key", "after-the-crash".into())],
            )
            .await;
        if reply.status == StatusCode::OK {
            break reply;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert!(Instant::now() < deadline, "commands never recovered: {reply:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(updated.body["version"], 1, "the half-written version 2 never counted: {updated:?}");
    let shown = app.get_after(&format!("/api/tickets/{ticket}"), &updated).await;
    assert_eq!((shown.body["title"].as_str(), shown.body["version"].as_i64()), (Some("after"), Some(1)));
    // Attempts that timed out behind the open transaction appended repeats of the same
    // command, which the arbiter ignores; the half-written event is nowhere.
    let updates: Vec<(i64, String)> = read_ticket_log(&log, &app.registry_url())
        .await
        .into_iter()
        .filter_map(|e| match e.event {
            TicketEvent::Updated(u) => Some((e.metadata.aggregate_version, u.title)),
            _ => None,
        })
        .collect();
    assert!(updates.iter().all(|(version, title)| (*version, title.as_str()) == (2, "after")), "{updates:?}");
    app.stop().await;
}
}

/// Not a test of its own: the writer that [`a_command_whose_writer_dies_between_its_events_leaves_nothing_visible`]
/// runs in a child process and kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_writer() {
    let Ok(spec) = std::env::var(WRITER) else { return };
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let log = LogConfig::new(spec["servers"].as_str().unwrap(), spec["namespace"].as_str().unwrap());
    let ticket = spec["ticket"].as_str().unwrap();
    let partitions = spec["partitions"].as_i64().unwrap() as i32;
    let codec = ticket_codec(&log, spec["registry"].as_str().unwrap());
    let topic = log.topic(TicketEvent::TOPIC);
    let partition = partition_for(ticket.as_bytes(), partitions);
    let producer = TransactionalProducer::new(&log, &writer_transactional_id(&topic, partition));
    let first = Envelope {
        metadata: EventMetadata {
            event_id: uuid::Uuid::new_v4(),
            aggregate_id: ticket.to_string(),
            aggregate_version: 2,
            command_id: "half".into(),
            command_event_index: 0,
            command_event_count: 2,
            occurred_at: chrono::Utc::now().timestamp_millis(),
            correlation_id: "half".into(),
            causation_id: None,
        },
        event: TicketEvent::Updated(TicketUpdated { title: "half".into(), price_minor: 100, currency: "USD".into(), user_id: "seller".into() }),
    };
    let bytes = codec.encode(&first).await.unwrap();
    let mut transaction = producer.begin().await.unwrap();
    transaction
        .send(&OutgoingRecord {
            topic: &topic,
            partition,
            key: ticket.as_bytes(),
            payload: &bytes,
            headers: vec![("event_type", b"TicketUpdated")],
        })
        .unwrap();
    transaction.written().await.unwrap();
    println!("HALF-WRITTEN");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// The process manager's reactions are appended to the tickets inbox in one transaction with
/// the offsets of the events that caused them: `ticketing up` killed with SIGKILL while it
/// reacts to a burst of cancellations, then started again, has exactly one release command per
/// cancelled order in the inbox, and every ticket is for sale again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_survive_a_kill_9_of_the_process_manager_exactly_once() {
    use crate::restarts::Up;
    let data = tempfile::tempdir().unwrap();
    let port = platform::local::free_port().unwrap();
    let kafka_port = platform::local::free_port().unwrap();
    let (up, _) = Up::start(data.path(), port, kafka_port).await;
    let mut tickets = Vec::new();
    let mut orders = Vec::new();
    for i in 0..12 {
        let (status, ticket) = up.send(Method::POST, "/api/tickets", Some(json!({"title": format!("t{i}"), "price": 5})), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        let ticket = ticket["id"].as_str().unwrap().to_string();
        let (status, order) = up.send_as("buyer", Method::POST, "/api/orders", Some(json!({"ticketId": ticket})), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        orders.push(order["id"].as_str().unwrap().to_string());
        tickets.push(ticket);
    }
    for order in &orders {
        let (status, body) = up.send_as("buyer", Method::DELETE, &format!("/api/orders/{order}"), None, &[]).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    // The process manager is reacting to the cancellations right now.
    up.kill();

    let (up, _) = Up::start(data.path(), port, kafka_port).await;
    let deadline = Instant::now() + platform::log::TRANSACTION_TIMEOUT + Duration::from_secs(30);
    for ticket in &tickets {
        loop {
            let (status, shown) = up.send(Method::GET, &format!("/api/tickets/{ticket}"), None, &[]).await;
            assert_eq!(status, StatusCode::OK, "{shown}");
            if shown.get("orderId").is_none() {
                assert_eq!(shown["version"], 2, "created, reserved, released once: {shown}");
                break;
            }
            assert!(Instant::now() < deadline, "ticket {ticket} was never released: {shown}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The restarted process manager redoes what the killed one had not committed (once the
    // broker has aborted the dead member's transaction), and nothing it had.
    let log = LogConfig::new(format!("127.0.0.1:{kafka_port}"), "ticketing");
    let inbox = platform::inbox::inbox_topic(&log.topic(TicketEvent::TOPIC));
    let expected: std::collections::BTreeMap<String, usize> =
        orders.iter().map(|order| (orders_command::saga::release_command_id(order), 1)).collect();
    let mut commands = std::collections::BTreeMap::new();
    while Instant::now() < deadline {
        commands = committed_commands(&log, &inbox).await;
        if commands.len() == expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(commands, expected, "one committed release command per cancelled order");
    up.stop().await;
}
