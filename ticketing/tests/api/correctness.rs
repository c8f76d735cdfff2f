//! Every acknowledged effect happens exactly once: commands stand or fall whole, holds end,
//! reactions obey the arbiter, and the reference client's inputs are accepted.

use std::time::Duration;

use platform::aggregate::{Envelope, EventMetadata};
use platform::codec::EventCodec;
use platform::log::{LogConfig, LogProducer};
use reqwest::{Method, StatusCode};
use schemas::events::AvroEvent;
use schemas::orders::{OrderCompleted, OrderEvent};
use schemas::tickets::{TicketEvent, TicketReleased, TicketReserved};
use serde_json::json;

use crate::helpers::{Deployment, TestApp, TestBroker, committed_commands, ticket_codec};

const LONG: Duration = Duration::from_secs(15);

/// Appends `event` to the aggregate's topic as a writer outside the system would.
struct RawWriter {
    producer: LogProducer,
}

impl RawWriter {
    fn new(log: &LogConfig) -> Self {
        Self { producer: LogProducer::new(log).unwrap() }
    }

    async fn append<E: AvroEvent>(&self, codec: &dyn EventCodec<E>, metadata: EventMetadata, event: E) {
        let key = metadata.aggregate_id.clone();
        let envelope = Envelope { metadata, event };
        let bytes = codec.encode(&envelope).await.unwrap();
        let event_type = envelope.event.event_type().as_bytes();
        self.producer.append(codec.topic(), key.as_bytes(), &bytes, &[("event_type", event_type)]).await.unwrap();
    }
}

fn metadata(aggregate: &str, version: i64, command: &str, index: i32, count: i32) -> EventMetadata {
    EventMetadata {
        event_id: uuid::Uuid::new_v4(),
        aggregate_id: aggregate.into(),
        aggregate_version: version,
        command_id: command.into(),
        command_event_index: index,
        command_event_count: count,
        occurred_at: chrono::Utc::now().timestamp_millis(),
        correlation_id: "test".into(),
        causation_id: None,
    }
}

fn reserved(order: &str, expires_at: i64) -> TicketEvent {
    TicketEvent::Reserved(TicketReserved { order_id: order.into(), expires_at })
}

fn released(order: &str) -> TicketEvent {
    TicketEvent::Released(TicketReleased { order_id: order.into() })
}

async fn ticket_for_sale(app: &TestApp, id: &str) -> bool {
    let listed = app.request(Method::GET, "/api/tickets", None, None).await;
    listed.body.as_array().unwrap().iter().any(|t| t["id"] == id)
}

both_stores! {
async fn a_command_whose_first_event_lost_its_version_is_applied_by_no_reader() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    // No expiration worker: it would release the lapsed hold below itself, in the middle of
    // the interleaving the test writes.
    let components: Vec<ticketing::app::Component> =
        ticketing::app::Component::ALL.into_iter().filter(|c| *c != ticketing::app::Component::Expiration).collect();
    let app = TestApp::start(deployment.settings(), &components).await;
    let ticket = app.create_ticket("seller", "concert", 20.0).await;
    let id = ticket.id();
    let log = deployment.log();
    let codec = ticket_codec(&log, &app.registry_url());
    let writer = RawWriter::new(&log);
    let lapsed = chrono::Utc::now().timestamp_millis() - 1_000;
    let later = chrono::Utc::now().timestamp_millis() + 600_000;
    writer.append(codec.as_ref(), metadata(&id, 2, "hold", 0, 1), reserved("lapsed-order", lapsed)).await;
    // Two owners replace the lapsed hold at once; their records interleave in the partition.
    // The winner's first event comes first; the loser's first event is a duplicate, and its
    // second one carries the next version, built on a state it never saw.
    writer.append(codec.as_ref(), metadata(&id, 3, "winner", 0, 2), released("lapsed-order")).await;
    writer.append(codec.as_ref(), metadata(&id, 3, "loser", 0, 2), released("lapsed-order")).await;
    writer.append(codec.as_ref(), metadata(&id, 4, "loser", 1, 2), reserved("loser-order", later)).await;
    writer.append(codec.as_ref(), metadata(&id, 4, "winner", 1, 2), reserved("winner-order", later)).await;

    // The read side shows the winner's hold ...
    let shown = app.eventually(&format!("/api/tickets/{id}"), None, LONG, |r| r.body["version"] == 3).await;
    assert_eq!(shown.body["orderId"], "winner-order", "{shown:?}");
    // ... and so does the command side: the seller cannot edit, and after the edit is refused
    // for the winner's hold, the next version it writes is 5.
    let edit = app
        .request(Method::PUT, &format!("/api/tickets/{id}"), Some("seller"), Some(json!({"title": "x", "price": 1})))
        .await;
    assert_eq!(edit.status, StatusCode::BAD_REQUEST, "{edit:?}");
    assert_eq!(edit.body["errors"][0]["message"], "Cannot edit a reserved ticket");
    let order = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": id}))).await;
    assert_eq!(order.status, StatusCode::BAD_REQUEST, "{order:?}");
    assert_eq!(order.body["errors"][0]["message"], "Ticket is already reserved");
    app.stop().await;
}
}

both_stores! {
async fn a_hold_whose_order_was_never_created_ends_at_its_deadline() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let ticket = app.create_ticket("seller", "concert", 20.0).await;
    let id = ticket.id();
    app.eventually("/api/tickets", None, LONG, |r| r.body.as_array().unwrap().iter().any(|t| t["id"] == id.as_str())).await;
    // The reservation landed, the order's append did not (its process died in between).
    let log = deployment.log();
    let codec = ticket_codec(&log, &app.registry_url());
    let deadline = chrono::Utc::now().timestamp_millis() + 2_000;
    RawWriter::new(&log).append(codec.as_ref(), metadata(&id, 2, "reserve:ghost", 0, 1), reserved("ghost", deadline)).await;
    app.eventually(&format!("/api/tickets/{id}"), None, LONG, |r| r.body["orderId"] == "ghost").await;
    assert!(!ticket_for_sale(&app, &id).await, "a held ticket is not listed");
    let early = app
        .request(Method::PUT, &format!("/api/tickets/{id}"), Some("seller"), Some(json!({"title": "x", "price": 1})))
        .await;
    assert_eq!(early.status, StatusCode::BAD_REQUEST, "the hold blocks editing until its deadline: {early:?}");

    // Past the deadline nobody has to order it by id: it is listed again and editable.
    let shown = app.eventually(&format!("/api/tickets/{id}"), None, LONG, |r| r.body.get("orderId").is_none()).await;
    assert_eq!(shown.body["version"], 2, "released once: {shown:?}");
    assert!(ticket_for_sale(&app, &id).await);
    let edit = app
        .request(Method::PUT, &format!("/api/tickets/{id}"), Some("seller"), Some(json!({"title": "opera", "price": 25})))
        .await;
    assert_eq!(edit.status, StatusCode::OK, "{edit:?}");
    app.stop().await;
}
}

both_stores! {
async fn an_expired_hold_never_blocks_editing_even_before_it_is_released() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    // No expiration worker: only the ticket's own rule can end the hold.
    let app = TestApp::start(
        deployment.settings(),
        &[ticketing::app::Component::Tickets, ticketing::app::Component::ProjectorTickets, ticketing::app::Component::QueryApi, ticketing::app::Component::SchemaRegistry],
    )
    .await;
    let ticket = app.create_ticket("seller", "concert", 20.0).await;
    let id = ticket.id();
    let log = deployment.log();
    let codec = ticket_codec(&log, &app.registry_url());
    let lapsed = chrono::Utc::now().timestamp_millis() - 1;
    RawWriter::new(&log).append(codec.as_ref(), metadata(&id, 2, "reserve:gone", 0, 1), reserved("gone", lapsed)).await;
    app.eventually(&format!("/api/tickets/{id}"), None, LONG, |r| r.body["orderId"] == "gone").await;
    let edit = app
        .request(Method::PUT, &format!("/api/tickets/{id}"), Some("seller"), Some(json!({"title": "opera", "price": 25})))
        .await;
    assert_eq!(edit.status, StatusCode::OK, "{edit:?}");
    let shown = app.get_after(&format!("/api/tickets/{id}"), &edit).await;
    assert_eq!(shown.body["title"], "opera");
    assert!(shown.body.get("orderId").is_none(), "{shown:?}");
    assert!(ticket_for_sale(&app, &id).await);
    app.stop().await;
}
}

both_stores! {
async fn a_stale_writers_event_sets_off_no_reaction() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let ticket = app.create_ticket("seller", "concert", 20.0).await;
    let ticket_id = ticket.id();
    let order = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": ticket_id}))).await;
    assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
    let order_id = order.id();

    // A stale writer's completion at the version the creation holds: a duplicate. Were the
    // process manager to react to it, the unpaid ticket would be sold.
    let log = deployment.log();
    let orders_codec = schemas::codec::AvroCodec::<OrderEvent>::new(
        log.topic(OrderEvent::TOPIC),
        schemas::codec::registry_settings(&app.registry_url()).unwrap(),
    );
    let zombie = OrderEvent::Completed(OrderCompleted { ticket_id: ticket_id.clone(), payment_id: "never-paid".into() });
    RawWriter::new(&log).append(&orders_codec, metadata(&order_id, 1, "zombie", 0, 1), zombie).await;

    // The real cancellation comes after it in the same partition: once the process manager's
    // release for it is in the inbox, the zombie has been judged, and it asked for no sale.
    let cancel = app.request(Method::DELETE, &format!("/api/orders/{order_id}"), Some("buyer"), None).await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT, "{cancel:?}");
    let inbox = platform::inbox::inbox_topic(&log.topic(TicketEvent::TOPIC));
    let release = orders_command::saga::release_command_id(&order_id);
    let deadline = std::time::Instant::now() + LONG;
    let commands = loop {
        let commands = committed_commands(&log, &inbox).await;
        if commands.contains_key(&release) {
            break commands;
        }
        assert!(std::time::Instant::now() < deadline, "the cancellation was never reacted to: {commands:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let sell = orders_command::saga::sell_command_id(&order_id);
    assert!(!commands.contains_key(&sell), "no sale was ever asked for: {commands:?}");
    app.eventually("/api/tickets", None, LONG, |r| r.body.as_array().unwrap().iter().any(|t| t["id"] == ticket_id.as_str())).await;
    app.stop().await;
}
}

both_stores! {
async fn the_reference_clients_price_strings_and_trailing_slashes_are_accepted() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let created = app.request(Method::POST, "/api/tickets", Some("seller"), Some(json!({"title": "concert", "price": "12.50"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.body["price"], json!(12.5), "answered as a number");
    let id = created.id();
    for refused in [json!("12.505"), json!("12,50"), json!("-1"), json!("1e3"), json!(""), json!(true)] {
        let reply = app.request(Method::POST, "/api/tickets", Some("seller"), Some(json!({"title": "x", "price": refused}))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{refused} must be refused: {reply:?}");
        assert_eq!(reply.body["errors"][0]["field"], "price");
    }
    let listed = app.get_after("/api/tickets/", &created).await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert_eq!(listed.body[0]["id"], id.as_str());
    let order = app.request(Method::POST, "/api/orders/", Some("buyer"), Some(json!({"ticketId": id}))).await;
    assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
    let shown = app.get_after_as(&format!("/api/orders/{}/", order.id()), Some("buyer"), &order).await;
    assert_eq!(shown.status, StatusCode::OK, "{shown:?}");
    assert_eq!(shown.body["ticket"]["price"], json!(12.5));
    app.stop().await;
}
}

both_stores! {
async fn the_token_of_an_order_covers_the_reservation_it_made() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let ticket = app.create_ticket("seller", "concert", 20.0).await.id();
    let order = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": ticket}))).await;
    assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
    let token = order.consistency_token.clone().unwrap();
    assert!(token.contains("orders:") && token.contains("tickets:"), "one position per topic written: {token}");
    // No polling: the token makes the read wait for the reservation.
    let shown = app.get_after(&format!("/api/tickets/{ticket}"), &order).await;
    assert_eq!(shown.body["orderId"], order.id().as_str(), "{shown:?}");
    assert!(shown.headers.get("x-consistency").is_none(), "not stale: {shown:?}");
    let cancelled = app.request(Method::DELETE, &format!("/api/orders/{}", order.id()), Some("buyer"), None).await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    let shown = app.get_after(&format!("/api/tickets/{ticket}"), &cancelled).await;
    assert!(shown.body.get("orderId").is_none(), "the release is covered too: {shown:?}");
    app.stop().await;
}
}

both_stores! {
async fn a_client_without_a_token_never_gets_a_404_for_its_own_acknowledged_write() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    // The reference client reads every write back at once and sends no token.
    for i in 0..15 {
        let ticket = app.create_ticket("seller", &format!("show {i}"), 20.0).await.id();
        let shown = app.request(Method::GET, &format!("/api/tickets/{ticket}"), None, None).await;
        assert_eq!(shown.status, StatusCode::OK, "ticket {i}: {shown:?}");
        let order = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": ticket}))).await;
        assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
        let shown = app.request(Method::GET, &format!("/api/orders/{}", order.id()), Some("buyer"), None).await;
        assert_eq!(shown.status, StatusCode::OK, "order {i}: {shown:?}");
        assert_eq!(shown.body, order.body);
    }
    // An id nobody wrote is still a 404, answered once the projection is at the log's end.
    let missing = app.request(Method::GET, "/api/orders/no-such-order", Some("buyer"), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.stop().await;
}
}

/// Runs `ticketing dead-letters …` against the deployment; its stdout.
fn dead_letters(deployment: &Deployment, args: &[&str]) -> String {
    let output = deployment.tool(&[&["dead-letters"], args].concat()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "dead-letters {args:?} failed: {}{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The id of the open entry parked from `source_topic` by `consumer`, from `list`.
fn open_entry(listing: &str, source_topic: &str, consumer: &str) -> Option<String> {
    listing
        .lines()
        .find(|line| line.contains(&format!("{source_topic}/")) && line.contains(consumer) && line.contains(" open "))
        .map(|line| line.split_whitespace().next().unwrap().to_string())
}

both_stores! {
async fn an_unreadable_event_blocks_only_its_aggregate_until_an_operator_skips_it() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let ticket = app.create_ticket("seller", "concert", 20.0).await.id();
    let log = deployment.log();
    let topic = log.topic(TicketEvent::TOPIC);
    LogProducer::new(&log)
        .unwrap()
        .append(&topic, ticket.as_bytes(), b"\x00\x00\x00\x00\x63not avro at all", &[("event_type", b"TicketUpdated")])
        .await
        .unwrap();

    // The command side refuses the ticket clearly rather than deciding on a guessed state.
    let deadline = std::time::Instant::now() + LONG;
    let refused = loop {
        let reply = app
            .request(Method::PUT, &format!("/api/tickets/{ticket}"), Some("seller"), Some(json!({"title": "x", "price": 1})))
            .await;
        if reply.status == StatusCode::CONFLICT {
            break reply;
        }
        assert!(std::time::Instant::now() < deadline, "never refused: {reply:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = refused.body["errors"][0]["message"].as_str().unwrap().to_string();
    assert!(message.contains("cannot be read") && message.contains("ticketing dead-letters"), "{message}");
    // Every other aggregate goes on, and the ticket is still shown.
    app.create_ticket("seller", "other", 5.0).await;
    assert_eq!(app.request(Method::GET, &format!("/api/tickets/{ticket}"), None, None).await.status, StatusCode::OK);

    // The operator finds it parked with its reason, looks at it, and skips it.
    let listing = dead_letters(&deployment, &["list"]);
    let id = open_entry(&listing, &topic, &format!("{topic}.commands")).unwrap_or_else(|| panic!("parked: {listing}"));
    let shown = dead_letters(&deployment, &["show", &id]);
    assert!(shown.contains(&format!("key:       {ticket}")) && shown.contains("reason:"), "{shown}");
    let replay = deployment.tool(&["dead-letters", "replay", &id]).output().unwrap();
    assert!(!replay.status.success(), "an aggregate's own event is never appended again");
    assert!(String::from_utf8_lossy(&replay.stderr).contains("skip"), "{}", String::from_utf8_lossy(&replay.stderr));
    let skipped = dead_letters(&deployment, &["skip", &id]);
    assert!(skipped.contains("restart the command services"), "{skipped}");
    app.stop().await;

    let app = deployment.spawn().await;
    let edited = app
        .request(Method::PUT, &format!("/api/tickets/{ticket}"), Some("seller"), Some(json!({"title": "opera", "price": 25})))
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{edited:?}");
    assert!(open_entry(&dead_letters(&deployment, &["list"]), &topic, "commands").is_none(), "nothing left open");
    app.stop().await;
}
}

both_stores! {
async fn a_parked_inbox_command_is_replayed_by_the_operator() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let ticket = app.create_ticket("seller", "concert", 20.0).await.id();
    let order = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": ticket}))).await;
    assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
    let order_id = order.id();

    // An executor gave up on the release the order's cancellation called for.
    let log = deployment.log();
    let request = platform::command::CommandRequest {
        aggregate_id: ticket.clone(),
        command_id: orders_command::saga::release_command_id(&order_id),
        expected_version: None,
        correlation_id: "test".into(),
        causation_id: None,
        command: tickets_command::domain::TicketCommand::ReleaseTicket { order_id: order_id.clone() },
    };
    let command = platform::inbox::InboxCommand::new(&log.topic(TicketEvent::TOPIC), log.partitions, "ReleaseTicket", &request);
    let parked = platform::log::LogRecord {
        topic: command.topic.as_str().into(),
        position: platform::log::LogPosition { partition: command.partition, offset: 0 },
        key: Some(command.key.clone().into_bytes()),
        payload: Some(command.payload.clone()),
        headers: vec![("command_type".into(), b"ReleaseTicket".to_vec())],
        timestamp: None,
    };
    platform::log::DeadLetters::open(&log).await.unwrap().park(&parked, "inbox", "the executor gave up").await.unwrap();

    let listing = dead_letters(&deployment, &["list"]);
    let id = open_entry(&listing, &command.topic, "inbox").unwrap_or_else(|| panic!("parked: {listing}"));
    let replayed = dead_letters(&deployment, &["replay", &id]);
    assert!(replayed.contains("again"), "{replayed}");
    app.eventually(&format!("/api/tickets/{ticket}"), None, LONG, |r| r.body.get("orderId").is_none()).await;
    assert!(open_entry(&dead_letters(&deployment, &["list"]), &command.topic, "inbox").is_none(), "resolved as replayed");
    app.stop().await;
}
}

both_stores! {
async fn a_stale_writers_cancellation_never_takes_an_orders_deadline_away() {
    let broker = TestBroker::start().await;
    let mut deployment = Deployment::new(&broker).await;
    deployment.expiration_window_seconds = 2;
    let app = deployment.spawn().await;
    let ticket = app.create_ticket("seller", "concert", 20.0).await.id();
    let order = app.request(Method::POST, "/api/orders", Some("buyer"), Some(json!({"ticketId": ticket}))).await;
    assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
    let order_id = order.id();
    // A duplicate of version 1: were the expiration worker to believe it, the order would lose
    // its deadline and hold the ticket for ever.
    let log = deployment.log();
    let orders_codec = schemas::codec::AvroCodec::<OrderEvent>::new(
        log.topic(OrderEvent::TOPIC),
        schemas::codec::registry_settings(&app.registry_url()).unwrap(),
    );
    let zombie = OrderEvent::Cancelled(schemas::orders::OrderCancelled { ticket_id: ticket.clone(), reason: "cancelled".into() });
    RawWriter::new(&log).append(&orders_codec, metadata(&order_id, 1, "zombie", 0, 1), zombie).await;

    let shown = app
        .eventually(&format!("/api/orders/{order_id}"), Some("buyer"), LONG, |r| r.body["status"] == "cancelled")
        .await;
    assert_eq!(shown.body["version"], 1, "expired once, at its deadline: {shown:?}");
    app.eventually(&format!("/api/tickets/{ticket}"), None, LONG, |r| r.body.get("orderId").is_none()).await;
    app.stop().await;
}
}
