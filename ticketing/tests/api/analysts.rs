//! The analysts' tools, run as `ticketing <command>` against a deployment's real log: export,
//! and records of earlier schema versions read by today's code.

use std::collections::BTreeMap;
use std::path::Path;

use apache_avro::types::Value as Avro;
use platform::log::{LogConfig, LogProducer, ensure_topics};
use reqwest::{Method, StatusCode};
use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};
use schemas::registry::{SchemaRegistry, router};
use serde_json::{Value, json};

use crate::helpers::{Deployment, TestApp, TestBroker, read_ticket_log};

/// Runs `ticketing export <args>` and returns its stdout lines as JSON, and its stderr.
fn export(deployment: &Deployment, args: &[&str]) -> (Vec<Value>, String) {
    let output = deployment.tool(&[&["export"], args].concat()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "export {args:?} failed: {stderr}");
    (json_lines(&String::from_utf8_lossy(&output.stdout)), stderr)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

/// A marketplace history: two sellers' tickets, one repriced, one ordered and cancelled.
async fn history(app: &TestApp) -> (String, String) {
    let mut alice = app.browser();
    assert_eq!(alice.signup("alice@example.com", "secret-pass").await.status, StatusCode::CREATED);
    let first = app.create_ticket("alice", "concert", 20.0).await.id();
    let second = app.create_ticket("bob", "opera", 35.5).await.id();
    let repriced = app
        .request(Method::PUT, &format!("/api/tickets/{first}"), Some("alice"), Some(json!({"title": "concert", "price": 25})))
        .await;
    assert_eq!(repriced.status, StatusCode::OK);
    let order = app.request(Method::POST, "/api/orders", Some("carol"), Some(json!({"ticketId": second}))).await;
    assert_eq!(order.status, StatusCode::CREATED, "{:?}", order.body);
    let cancelled = app.request(Method::DELETE, &format!("/api/orders/{}", order.id()), Some("carol"), None).await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    (first, second)
}

#[tokio::test]
async fn an_export_of_a_known_history_equals_what_was_written() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let (first, _) = history(&app).await;
    let written = read_ticket_log(&deployment.log(), &app.registry_url()).await;

    // Act
    let (lines, stderr) = export(&deployment, &["--topic", "tickets"]);

    // Assert: every event, in each partition's order, with its envelope and payload.
    assert_eq!(lines.len(), written.len(), "{stderr}");
    let mut last_offset = BTreeMap::new();
    for line in &lines {
        let partition = line["partition"].as_i64().unwrap();
        let offset = line["offset"].as_i64().unwrap();
        assert!(last_offset.insert(partition, offset).is_none_or(|before| before < offset), "order within {partition}");
        assert_eq!(line["topic"], format!("{}.tickets", deployment.namespace));
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let exported: BTreeMap<(String, i64), &Value> = lines
        .iter()
        .map(|l| ((l["envelope"]["aggregate_id"].as_str().unwrap().to_string(), l["envelope"]["aggregate_version"].as_i64().unwrap()), l))
        .collect();
    for event in &written {
        let key = (event.metadata.aggregate_id.clone(), event.metadata.aggregate_version);
        let line = exported.get(&key).unwrap_or_else(|| panic!("{key:?} was exported"));
        assert_eq!(line["key"], event.metadata.aggregate_id);
        assert_eq!(line["envelope"]["event_id"], event.metadata.event_id.to_string());
        assert_eq!(line["envelope"]["command_id"], event.metadata.command_id);
        assert_eq!(line["envelope"]["correlation_id"], event.metadata.correlation_id);
        let expected_type = match &event.event {
            schemas::tickets::TicketEvent::Created(e) => {
                assert_eq!(line["payload"], json!({"title": e.title, "price_minor": e.price_minor, "currency": e.currency, "user_id": e.user_id}));
                "TicketCreated"
            }
            schemas::tickets::TicketEvent::Updated(e) => {
                assert_eq!(line["payload"]["price_minor"], e.price_minor);
                "TicketUpdated"
            }
            schemas::tickets::TicketEvent::Reserved(e) => {
                assert_eq!(line["payload"]["order_id"], e.order_id);
                "TicketReserved"
            }
            schemas::tickets::TicketEvent::Released(_) => "TicketReleased",
            schemas::tickets::TicketEvent::Sold(_) => "TicketSold",
        };
        assert_eq!(line["event_type"], expected_type);
    }
    assert!(stderr.contains(&format!("Exported {} events", written.len())), "{stderr}");

    // Filters: one type, one aggregate.
    let (updates, _) = export(&deployment, &["--topic", "tickets", "--type", "TicketUpdated"]);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["payload"]["price_minor"], 2500);
    let (of_first, _) = export(&deployment, &["--aggregate", &first]);
    let versions: Vec<i64> = of_first.iter().map(|l| l["envelope"]["aggregate_version"].as_i64().unwrap()).collect();
    assert_eq!(versions, vec![1, 2], "the first ticket's events only, from every topic");

    // Personal data: sealed in the log, redacted in exports unless asked for, then opened with
    // the master key.
    let (users, _) = export(&deployment, &["--topic", "users"]);
    assert_eq!(users.len(), 1);
    let text = users[0].to_string();
    assert!(!text.contains("alice@example.com") && !text.contains("argon2"), "redacted: {text}");
    assert_eq!(users[0]["key"], "[redacted]");
    let (users, _) = export(&deployment, &["--topic", "users", "--include-personal-data"]);
    assert_eq!(users[0]["payload"]["personal"]["email"], "alice@example.com");
    assert!(users[0]["payload"]["personal"]["password_hash"].as_str().unwrap().starts_with("$argon2id$"));
    assert_eq!(users[0]["payload"]["email"], "", "nothing in clear");
    app.stop().await;
}

#[tokio::test]
async fn an_export_window_is_chosen_by_time_or_offsets() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let early = app.create_ticket("alice", "early", 10.0).await.id();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let between = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let late = app.create_ticket("alice", "late", 10.0).await.id();
    let ids = |lines: &[Value]| -> Vec<String> {
        lines.iter().map(|l| l["envelope"]["aggregate_id"].as_str().unwrap().to_string()).collect()
    };

    let (before, _) = export(&deployment, &["--topic", "tickets", "--until", &between]);
    assert_eq!(ids(&before), vec![early.clone()]);
    let (after, _) = export(&deployment, &["--topic", "tickets", "--since", &between]);
    assert_eq!(ids(&after), vec![late.clone()]);
    // A window that starts after the last record is empty (the broker answers past the end).
    let (future, _) = export(&deployment, &["--topic", "tickets", "--since", "2999-01-01T00:00:00Z"]);
    assert!(future.is_empty());
    // By offsets: the late ticket's own partition from its offset.
    let late_line = after[0].clone();
    let pair = format!("{}:{}", late_line["partition"], late_line["offset"]);
    let (from_offset, _) = export(&deployment, &["--topic", "tickets", "--since", &pair]);
    assert!(ids(&from_offset).contains(&late));

    // Bad windows are refused with the reason.
    let refused = deployment.tool(&["export", "--since", "yesterday"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("RFC 3339"));
    app.stop().await;
}

#[tokio::test]
async fn an_export_resumes_from_its_checkpoint_without_repeating_or_losing_events() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    for n in 0..5 {
        app.create_ticket("alice", &format!("ticket {n}"), 10.0).await;
    }
    let out = deployment.data.path().join("tickets.jsonl");
    let checkpoint = deployment.data.path().join("tickets.checkpoint");
    let args = ["--topic", "tickets", "--output", out.to_str().unwrap(), "--from-checkpoint", checkpoint.to_str().unwrap()];
    export(&deployment, &args);
    assert_eq!(json_lines(&std::fs::read_to_string(&out).unwrap()).len(), 5);

    // A run that stopped after its checkpoint left a torn line behind; more events arrived.
    std::fs::OpenOptions::new().append(true).open(&out).unwrap().write_all(b"{\"torn").unwrap();
    for n in 5..8 {
        app.create_ticket("alice", &format!("ticket {n}"), 10.0).await;
    }

    // Act: the same command again.
    let (_, stderr) = export(&deployment, &args);

    // Assert: the torn tail is gone and each event is there once.
    let lines = json_lines(&std::fs::read_to_string(&out).unwrap());
    let titles: Vec<&str> = lines.iter().map(|l| l["payload"]["title"].as_str().unwrap()).collect();
    let mut sorted = titles.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 8, "{titles:?}");
    assert_eq!(titles.len(), 8, "{titles:?}");
    assert!(stderr.contains("Exported 3 events"), "{stderr}");

    // Without the checkpoint, an existing export is not overwritten.
    let refused = deployment.tool(&["export", "--topic", "tickets", "--output", out.to_str().unwrap()]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already holds an export"));
    app.stop().await;
}

/// Serves the deployment's bundled registry (its state is in the log) on a loopback port.
async fn registry_of(log: &LogConfig) -> (String, tokio::task::JoinHandle<()>) {
    let registry = SchemaRegistry::open(log).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(registry)).await.unwrap() });
    (url, server)
}

/// Appends a TicketCreated as a v1 writer wrote it (price in cents of USD, no command
/// position), registering v1 as the first version of its subject.
async fn append_v1_ticket(log: &LogConfig, registry_url: &str, id: &str, title: &str, cents: i64) {
    let avsc = include_str!("../../../schemas/avro/registered/tickets/TicketCreated.v1.avsc");
    let topic = log.topic("tickets");
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.clone(),
        SuppliedSchema::new(Some("ticketing.tickets.TicketCreated".into()), SchemaType::Avro, avsc.into()),
    );
    let fields = vec![
        ("event_id", Avro::Uuid(uuid::Uuid::new_v4())),
        ("aggregate_id", Avro::String(id.into())),
        ("aggregate_version", Avro::Long(1)),
        ("command_id", Avro::String(format!("create:{id}"))),
        ("occurred_at", Avro::TimestampMillis(chrono::Utc::now().timestamp_millis())),
        ("correlation_id", Avro::String("legacy".into())),
        ("causation_id", Avro::Union(0, Box::new(Avro::Null))),
        ("title", Avro::String(title.into())),
        ("price_cents", Avro::Long(cents)),
        ("user_id", Avro::String("legacy-seller".into())),
    ];
    let bytes = AvroEncoder::new(SrSettings::new(registry_url.into())).encode(fields, strategy).await.expect("v1 encodes");
    LogProducer::new(log).unwrap().append(&topic, id.as_bytes(), &bytes, &[("event_type", b"TicketCreated")]).await.unwrap();
}

#[tokio::test]
async fn records_written_by_v1_are_read_by_todays_code_and_exported_beside_v3_ones() {
    // Arrange: a log from before prices named their currency, then today's services on it.
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let log = deployment.log();
    ensure_topics(&log, &ticketing::app::topics(&log)).await.unwrap();
    let (registry_url, registry) = registry_of(&log).await;
    let legacy = uuid::Uuid::new_v4().to_string();
    append_v1_ticket(&log, &registry_url, &legacy, "from v1", 1250).await;
    registry.abort();
    let app = deployment.spawn().await;

    // Act: a v3 ticket in yen beside it.
    let yen = app
        .request(Method::POST, "/api/tickets", Some("alice"), Some(json!({"title": "in yen", "price": 1500, "currency": "JPY"})))
        .await;
    assert_eq!(yen.status, StatusCode::CREATED, "{:?}", yen.body);
    assert_eq!((yen.body["price"].clone(), yen.body["currency"].clone()), (json!(1500.0), json!("JPY")));

    // Assert: the API shows the v1 ticket in USD, read through the upcaster and resolution.
    let shown = app.eventually(&format!("/api/tickets/{legacy}"), None, std::time::Duration::from_secs(10), |r| r.status == StatusCode::OK).await;
    assert_eq!((shown.body["price"].clone(), shown.body["currency"].clone()), (json!(12.5), json!("USD")));
    // Today's code decides on it: its seller can reprice it.
    let repriced = app
        .request(Method::PUT, &format!("/api/tickets/{legacy}"), Some("legacy-seller"), Some(json!({"title": "from v1", "price": 13})))
        .await;
    assert_eq!(repriced.status, StatusCode::OK, "{:?}", repriced.body);

    // The JSON export shows both, each with its writer's schema id, in today's shape.
    let (lines, _) = export(&deployment, &["--topic", "tickets", "--type", "TicketCreated"]);
    let by_id: BTreeMap<&str, &Value> = lines.iter().map(|l| (l["key"].as_str().unwrap(), l)).collect();
    let (old, new) = (by_id[legacy.as_str()], by_id[yen.id().as_str()]);
    assert_ne!(old["schema_id"], new["schema_id"]);
    assert_eq!(old["payload"], json!({"title": "from v1", "price_minor": 1250, "currency": "USD", "user_id": "legacy-seller"}));
    assert_eq!(old["envelope"]["command_event_count"], 1);
    assert_eq!((new["payload"]["price_minor"].clone(), new["payload"]["currency"].clone()), (json!(1500), json!("JPY")));

    // The Avro export keeps each record as written, one container file per writer schema.
    let dir = deployment.data.path().join("avro-export");
    export(&deployment, &["--topic", "tickets", "--type", "TicketCreated", "--format", "avro", "--output", dir.to_str().unwrap()]);
    let files = avro_files(&dir);
    assert_eq!(files.len(), 2, "{:?}", files.keys().collect::<Vec<_>>());
    let v1 = files.values().find(|records| records.iter().any(|r| field(r, "price_cents").is_some())).expect("a v1 file");
    assert_eq!(field(&v1[0], "price_cents"), Some(&Avro::Long(1250)));
    let v3 = files.values().find(|records| records.iter().any(|r| field(r, "currency").is_some())).expect("a v3 file");
    assert_eq!(field(&v3[0], "currency"), Some(&Avro::String("JPY".into())));
    app.stop().await;
}

fn field<'a>(record: &'a Avro, name: &str) -> Option<&'a Avro> {
    let Avro::Record(fields) = record else { return None };
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// The records of each Avro container file in `dir`, read with the schema in its header.
fn avro_files(dir: &Path) -> BTreeMap<String, Vec<Avro>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| {
            let reader = apache_avro::Reader::new(std::fs::File::open(entry.path()).unwrap()).unwrap();
            (entry.file_name().to_string_lossy().into_owned(), reader.map(|r| r.unwrap()).collect())
        })
        .collect()
}

use std::io::Write as _;

/// Runs `ticketing history <args>` and returns the JSON it prints.
fn history_of(deployment: &Deployment, args: &[&str]) -> Value {
    let output = deployment.tool(&[&["history"], args].concat()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "history {args:?} failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What the ticket's state says the API shows: (title, price, orderId, version).
fn as_api_shows(state: &Value, version: i64) -> (Value, f64, Value, i64) {
    let order = state["sold_to"].as_str().or(state["reservation"]["order_id"].as_str()).map_or(Value::Null, |o| json!(o));
    (state["title"].clone(), state["price_minor"].as_f64().unwrap() / 100.0, order, version - 1)
}

#[tokio::test]
async fn time_travel_shows_the_states_the_api_answered_at_those_moments() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let mut moments = Vec::new();
    let ticket = app.create_ticket("alice", "concert", 20.0).await;
    let id = ticket.id();
    let path = format!("/api/tickets/{id}");
    let mut remember = |answer: crate::helpers::Reply| {
        let shown = (answer.body["title"].clone(), answer.body["price"].as_f64().unwrap(), answer.body.get("orderId").cloned().unwrap_or(Value::Null), answer.body["version"].as_i64().unwrap());
        moments.push((chrono::Utc::now().to_rfc3339(), shown));
        // Decision times have millisecond precision: the next one must fall in a later one.
        std::thread::sleep(std::time::Duration::from_millis(3));
    };
    remember(app.get_after(&path, &ticket).await);
    let repriced = app.request(Method::PUT, &path, Some("alice"), Some(json!({"title": "concert", "price": 30}))).await;
    remember(app.get_after(&path, &repriced).await);
    let order = app.request(Method::POST, "/api/orders", Some("bob"), Some(json!({"ticketId": id}))).await;
    remember(app.get_after(&path, &order).await);
    let cancelled = app.request(Method::DELETE, &format!("/api/orders/{}", order.id()), Some("bob"), None).await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    let released = app.eventually(&path, None, std::time::Duration::from_secs(10), |r| r.body.get("orderId").is_none() && r.body["version"] == 3).await;
    remember(released);

    // Act / Assert: the state as of each moment is what the API answered then.
    for (at, shown) in &moments {
        let history = history_of(&deployment, &["ticket", &id, "--at", at]);
        assert_eq!(&as_api_shows(&history["state"], history["version"].as_i64().unwrap()), shown, "as of {at}");
    }

    // The whole history carries the decisions' metadata: the release was the cancelled
    // order's, in the cancelling request's correlation.
    let history = history_of(&deployment, &["ticket", &id]);
    let steps = history["history"].as_array().unwrap();
    let types: Vec<&str> = steps.iter().map(|s| s["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["TicketCreated", "TicketUpdated", "TicketReserved", "TicketReleased"]);
    assert_eq!(steps[3]["command_id"], format!("release:{}", order.id()));
    assert!(steps.iter().all(|s| s.get("causation_id").is_some() && s["command_id"].is_string()));
    assert_ne!(steps[3]["correlation_id"], steps[0]["correlation_id"]);
    assert_eq!(steps[1]["event"]["price_minor"], 3000);
    let at_version = history_of(&deployment, &["ticket", &id, "--version", "1"]);
    assert_eq!((at_version["version"].clone(), at_version["state"]["price_minor"].clone()), (json!(1), json!(2000)));
    assert_eq!(at_version["history"].as_array().unwrap().len(), 1);

    // The order's own history, and a clear refusal for an id that never existed.
    let order_history = history_of(&deployment, &["order", &order.id()]);
    assert_eq!(order_history["state"]["status"], "Cancelled");
    let missing = deployment.tool(&["history", "ticket", "no-such-ticket"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("No ticket \"no-such-ticket\""));
    app.stop().await;
}

#[tokio::test]
async fn a_read_model_rebuilt_as_of_a_time_is_served_read_only_by_name() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let early = app.create_ticket("alice", "early", 10.0).await;
    app.get_after(&format!("/api/tickets/{}", early.id()), &early).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let then = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let path = format!("/api/tickets/{}", early.id());
    let repriced = app.request(Method::PUT, &path, Some("alice"), Some(json!({"title": "early", "price": 99}))).await;
    assert_eq!(repriced.status, StatusCode::OK);
    let late = app.create_ticket("alice", "late", 10.0).await;
    app.get_after("/api/tickets", &late).await;
    app.stop().await;

    // Act: the embedded store is one process's at a time, so the rebuild runs while it is down.
    let output = deployment.tool(&["rebuild", "tickets", "--as-of", &then, "--into", "tickets_then"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("X-Read-Namespace: tickets_then"), "{stderr}");

    // Assert: the snapshot shows the marketplace as it was; the live read model is unchanged.
    let app = deployment.spawn().await;
    let as_then = [("x-read-namespace", "tickets_then".to_string())];
    let shown = app.send(Method::GET, &path, None, None, &as_then).await;
    assert_eq!((shown.status, shown.body["price"].clone()), (StatusCode::OK, json!(10.0)));
    let listed = app.send(Method::GET, "/api/tickets", None, None, &as_then).await;
    let titles: Vec<&str> = listed.body.as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["early"]);
    let absent = app.send(Method::GET, &format!("/api/tickets/{}", late.id()), None, None, &as_then).await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND);
    let live = app.request(Method::GET, &path, None, None).await;
    assert_eq!(live.body["price"], 99.0);
    // Only registered snapshots of that read model are served.
    for name in ["tickets_v1", "no_such_snapshot", "Bad-Name!"] {
        let refused = app.send(Method::GET, &path, None, None, &[("x-read-namespace", name.to_string())]).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{name}");
        refused.assert_error_shape();
    }
    let orders = app.send(Method::GET, "/api/orders", Some("alice"), None, &as_then).await;
    assert_eq!(orders.status, StatusCode::NOT_FOUND, "a tickets snapshot is no orders read model");
    // The name is not reused, and no snapshot is replayed over rows left in a namespace.
    app.stop().await;
    let again = deployment.tool(&["rebuild", "tickets", "--as-of", &then, "--into", "tickets_then"]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is taken"));
    let audit = deployment.tool(&["audit", "tickets", "--keep-scratch"]).output().unwrap();
    let audited = String::from_utf8_lossy(&audit.stderr).into_owned() + &String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{audited}");
    let scratch = audited.split("replayed into ").nth(1).and_then(|rest| rest.split(' ').next()).expect("the audit names its scratch namespace");
    let over = deployment.tool(&["rebuild", "tickets", "--as-of", &then, "--into", scratch]).output().unwrap();
    assert!(!over.status.success(), "a snapshot over the kept scratch {scratch}");
    assert!(String::from_utf8_lossy(&over.stderr).contains("already holds rows"), "{}", String::from_utf8_lossy(&over.stderr));
}

#[tokio::test]
async fn an_audit_after_tampering_with_one_row_reports_exactly_that_row() {
    use platform::store::{CellKey, EmbeddedStore, ReadStore};

    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    history(&app).await;
    let victim = app.create_ticket("dave", "victim", 40.0).await;
    app.get_after(&format!("/api/tickets/{}", victim.id()), &victim).await;
    app.stop().await;
    let audit = |args: &[&str]| deployment.tool(&[&["audit", "tickets"], args].concat()).output().unwrap();

    // A read model that matches its replay passes.
    let clean = audit(&[]);
    let stdout = String::from_utf8_lossy(&clean.stdout).into_owned();
    assert_eq!(clean.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&clean.stderr));
    assert!(stdout.contains(" 0 differences"), "{stdout}");

    // Tamper with one row: the victim's price.
    {
        let store = EmbeddedStore::open(&deployment.store_dir()).unwrap();
        let key = CellKey { namespace: "tickets_v1", table: "tickets", partition: &victim.id(), clustering: "" };
        let cell = store.get(key).await.unwrap().expect("the victim's row");
        let mut row: Value = serde_json::from_slice(&cell.value).unwrap();
        row["price_minor"] = json!(1);
        store.put(key, &serde_json::to_vec(&row).unwrap(), cell.write_ts + 1).await.unwrap();
    }

    // Act
    let tampered = audit(&["--show", "5"]);

    // Assert: a non-zero exit, one difference, and it names the row with both versions.
    let stdout = String::from_utf8_lossy(&tampered.stdout).into_owned();
    assert_eq!(tampered.status.code(), Some(3), "{stdout}{}", String::from_utf8_lossy(&tampered.stderr));
    assert!(stdout.contains(" 1 differences"), "{stdout}");
    let shown: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  tickets ")).collect();
    assert_eq!(shown, [format!("  tickets {:?} \"\":", victim.id())], "{stdout}");
    assert!(stdout.contains("\"price_minor\":1,") && stdout.contains("\"price_minor\":4000,"), "{stdout}");

    // The running system's metrics show the last audit's result.
    let app = deployment.spawn().await;
    let metrics = app
        .eventually("/metrics", None, std::time::Duration::from_secs(10), |r| {
            r.body.as_str().is_some_and(|t| t.contains("ticketing_audit_differences"))
        })
        .await;
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains("ticketing_audit_differences{read_model=\"tickets\"} 1"), "{text}");
    assert!(text.contains("ticketing_audit_last_run_timestamp_seconds{read_model=\"tickets\"}"), "{text}");
    app.stop().await;
}

/// The Python of `.venv-analysts/`, which `scripts/install-python-clients.sh` (run by the test
/// command) fills with confluent-kafka.
fn analysts_python() -> std::path::PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-analysts/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/install-python-clients.sh (scripts/test.sh does)", python.display());
    python
}

#[tokio::test]
async fn a_standard_python_client_reads_the_events_the_export_prints() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    history(&app).await;
    let topic = deployment.log().topic("tickets");
    let (exported, _) = export(&deployment, &["--topic", "tickets"]);

    // Act: confluent-kafka's Consumer and AvroDeserializer, through our registry.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_topic.py");
    // Asynchronously: the registry it asks is served by this test's own runtime.
    let output = tokio::process::Command::new(analysts_python())
        .arg(script)
        .args(["--bootstrap-servers", &deployment.bootstrap_servers, "--registry", &app.registry_url(), "--topic", &topic])
        .args(["--count", &exported.len().to_string()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python client failed: {stderr}");
    let read = json_lines(&String::from_utf8_lossy(&output.stdout));

    // Assert: the same records, field for field.
    let by_position = |lines: &[Value]| -> BTreeMap<(i64, i64), Value> {
        lines.iter().map(|l| ((l["partition"].as_i64().unwrap(), l["offset"].as_i64().unwrap()), l.clone())).collect()
    };
    let (exported, read) = (by_position(&exported), by_position(&read));
    assert_eq!(exported.keys().collect::<Vec<_>>(), read.keys().collect::<Vec<_>>());
    for (position, line) in &exported {
        let python = &read[position];
        assert_eq!(python["key"], line["key"], "at {position:?}");
        let mut fields = line["envelope"].as_object().unwrap().clone();
        fields.extend(line["payload"].as_object().unwrap().clone());
        assert_eq!(&python["value"], &Value::Object(fields), "at {position:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_following_export_writes_new_events_until_interrupted_and_keeps_its_checkpoint() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    app.create_ticket("alice", "before", 10.0).await;
    let out = deployment.data.path().join("follow.jsonl");
    let checkpoint = deployment.data.path().join("follow.checkpoint");
    let mut follower = tokio::process::Command::from(deployment.tool(&[
        "export",
        "--topic",
        "tickets",
        "--follow",
        "--output",
        out.to_str().unwrap(),
        "--from-checkpoint",
        checkpoint.to_str().unwrap(),
    ]))
    .spawn()
    .unwrap();
    let lines = |n: usize| {
        let out = out.clone();
        async move {
            for _ in 0..200 {
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                if text.lines().count() >= n {
                    return json_lines(&text);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the export never held {n} events: {:?}", std::fs::read_to_string(&out));
        }
    };

    // Act: an event after the export started reaches it.
    lines(1).await;
    app.create_ticket("alice", "after", 10.0).await;
    let written = lines(2).await;
    let status = std::process::Command::new("kill").args(["-INT", &follower.id().unwrap().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(std::time::Duration::from_secs(20), follower.wait()).await.expect("it stops").unwrap();

    // Assert: a clean stop, both events, and a checkpoint past them.
    assert!(exit.success(), "{exit}");
    let titles: Vec<&str> = written.iter().map(|l| l["payload"]["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["before", "after"]);
    let saved: Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    let next: i64 = saved["positions"][deployment.log().topic("tickets")].as_object().unwrap().values().map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(next, 2, "{saved}");
    app.stop().await;
}
