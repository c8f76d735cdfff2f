//! Personal data out of the clear: no email or password hash in any topic, users keyed by the
//! email's index key, and erasure (crypto-shredding) through the admin route and the CLI;
//! the migration of sign-ups written before sealing.

use std::collections::BTreeMap;

use platform::log::{LogConfig, TopicReader};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Deployment, TestApp, TestBroker};

/// Every record (key, value, headers) of every topic of the deployment's namespace.
async fn raw_records(log: &LogConfig) -> Vec<(String, Vec<u8>)> {
    let topics: Vec<String> = tokio::task::block_in_place(|| {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = log.client_config().create().unwrap();
        let metadata = consumer.fetch_metadata(None, std::time::Duration::from_secs(10)).unwrap();
        metadata.topics().iter().map(|t| t.name().to_string()).filter(|n| n.starts_with(&format!("{}.", log.namespace))).collect()
    });
    assert!(topics.len() > 5, "the namespace's topics are found: {topics:?}");
    let mut all = Vec::new();
    for topic in topics {
        let reader = TopicReader::from_beginning(log, &topic).unwrap();
        let ends: BTreeMap<i32, i64> = reader.end_offsets();
        reader
            .read_until(&ends, |record| {
                let mut bytes = record.key.clone().unwrap_or_default();
                bytes.extend(record.payload.clone().unwrap_or_default());
                for (name, value) in &record.headers {
                    bytes.extend(name.as_bytes());
                    bytes.extend(value);
                }
                all.push((topic.clone(), bytes));
            })
            .await
            .unwrap();
    }
    all
}

fn holding<'a>(records: &'a [(String, Vec<u8>)], needle: &str) -> Vec<&'a str> {
    records
        .iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes())))
        .map(|(topic, _)| topic.as_str())
        .collect()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> StatusCode {
    app.request(Method::POST, "/api/users/signin", None, Some(json!({"email": email, "password": password}))).await.status
}

async fn forget_route(app: &TestApp, id: &str, token: Option<&str>) -> StatusCode {
    let mut request = app.client.delete(format!("{}/api/admin/users/{id}", app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status()
}

fn export_users(deployment: &Deployment) -> Vec<Value> {
    let output = deployment.tool(&["export", "--topic", "users", "--include-personal-data"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn sign_up_of<'a>(lines: &'a [Value], user_id: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["event_type"] == "UserSignedUp" && l["payload"]["user_id"] == user_id)
        .unwrap_or_else(|| panic!("no sign-up of {user_id} in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forgotten_user_leaves_no_email_or_hash_anywhere_and_order_history_stays_consistent() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;

    // Erin buys a ticket; Frank just signs up.
    let mut erin = app.browser();
    let signed_up = erin.signup("Erin.Erased@Example.com", "erin-pw-1").await;
    assert_eq!(signed_up.status, StatusCode::CREATED, "{signed_up:?}");
    let erin_id = signed_up.id();
    let mut frank = app.browser();
    let frank_id = frank.signup("frank@example.com", "frank-pw-1").await.id();
    let ticket = app.create_ticket("seller", "concert", 40.0).await;
    let order = erin.send(Method::POST, "/api/orders", Some(json!({"ticketId": ticket.id()}))).await;
    assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
    let order_id = order.id();

    // Sealed from the start: the log never holds an email or a password hash in clear.
    let log = deployment.log();
    let before = raw_records(&log).await;
    assert!(holding(&before, "erin.erased@example.com").is_empty(), "{:?}", holding(&before, "erin.erased@example.com"));
    assert!(holding(&before, "$argon2").is_empty(), "{:?}", holding(&before, "$argon2"));
    // The operator with the master key reads them in an export.
    let lines = export_users(&deployment);
    assert_eq!(sign_up_of(&lines, &erin_id)["payload"]["personal"]["email"], "erin.erased@example.com");

    // A process with another master key refuses to start rather than read every user as gone.
    let mut wrong_key = deployment.tool(&["users", "forget", &erin_id]);
    wrong_key.env("TICKETING_MASTER_KEY", "ab".repeat(32));
    let refused = tokio::process::Command::from(wrong_key).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("another master key"), "{stderr}");

    // The admin route wants its token.
    assert_eq!(forget_route(&app, &erin_id, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(forget_route(&app, &erin_id, Some("not-the-admin-token")).await, StatusCode::UNAUTHORIZED);
    let as_user = app.send(Method::DELETE, &format!("/api/admin/users/{erin_id}"), Some("seller"), None, &[]).await;
    assert_eq!(as_user.status, StatusCode::UNAUTHORIZED, "a session is no admin");
    assert_eq!(forget_route(&app, "no-such-user", Some(ADMIN_TOKEN)).await, StatusCode::NOT_FOUND);
    // Erin by the route, Frank by the CLI.
    assert_eq!(forget_route(&app, &erin_id, Some(ADMIN_TOKEN)).await, StatusCode::NO_CONTENT);
    assert_eq!(forget_route(&app, &erin_id, Some(ADMIN_TOKEN)).await, StatusCode::NO_CONTENT, "again: no change");
    let cli = tokio::process::Command::from(deployment.tool(&["users", "forget", &frank_id])).output().await.unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));

    // Neither can sign in, and nothing anywhere reads their personal data.
    assert_eq!(sign_in(&app, "erin.erased@example.com", "erin-pw-1").await, StatusCode::BAD_REQUEST);
    assert_eq!(sign_in(&app, "frank@example.com", "frank-pw-1").await, StatusCode::BAD_REQUEST);
    let after = raw_records(&log).await;
    for needle in ["erin.erased@example.com", "frank@example.com", "$argon2"] {
        assert!(holding(&after, needle).is_empty(), "{needle} in {:?}", holding(&after, needle));
    }
    let lines = export_users(&deployment);
    for id in [&erin_id, &frank_id] {
        assert_eq!(sign_up_of(&lines, id)["payload"]["personal"], "[erased]");
        assert!(lines.iter().any(|l| l["event_type"] == "UserForgotten" && l["payload"]["user_id"] == id.as_str()));
    }
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains("erin.erased") && !text.contains("argon2"), "{text}");

    // The order history is untouched: her order and the ticket read as before.
    let shown = app.get_after_as(&format!("/api/orders/{order_id}"), Some(&erin_id), &order).await;
    assert_eq!(shown.status, StatusCode::OK, "{shown:?}");
    assert_eq!(shown.body["userId"], erin_id.as_str());
    assert_eq!(shown.body["ticket"]["id"], ticket.id().as_str());

    // The email is free again: a new person, a new user.
    let mut again = app.browser();
    let new = again.signup("erin.erased@example.com", "another-pw").await;
    assert_eq!(new.status, StatusCode::CREATED, "{new:?}");
    assert_ne!(new.id(), erin_id);
    assert_eq!(sign_in(&app, "erin.erased@example.com", "another-pw").await, StatusCode::OK);
    app.stop().await;
}

/// A sign-up as the code before sealing wrote it: the registered v2 schema, the email as
/// aggregate id and record key, email and password hash in clear.
async fn legacy_sign_up(app: &TestApp, log: &LogConfig, email: &str, password: &str) -> String {
    use apache_avro::types::Value as Avro;
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    use schema_registry_converter::async_impl::avro::AvroEncoder;
    use schema_registry_converter::async_impl::schema_registry::SrSettings;
    use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};

    let hash = argon2::Argon2::default().hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng)).unwrap().to_string();
    let user_id = uuid::Uuid::new_v4().to_string();
    let avsc = include_str!("../../../schemas/avro/registered/users/UserSignedUp.v2.avsc");
    let topic = log.topic("users");
    let fields = vec![
        ("event_id", Avro::Uuid(uuid::Uuid::new_v4())),
        ("aggregate_id", Avro::String(email.into())),
        ("aggregate_version", Avro::Long(1)),
        ("command_id", Avro::String(format!("signup:{email}:key-1"))),
        ("command_event_index", Avro::Int(0)),
        ("command_event_count", Avro::Int(1)),
        ("occurred_at", Avro::TimestampMillis(chrono::Utc::now().timestamp_millis())),
        ("correlation_id", Avro::String("legacy".into())),
        ("causation_id", Avro::Union(0, Box::new(Avro::Null))),
        ("user_id", Avro::String(user_id.clone())),
        ("email", Avro::String(email.into())),
        ("password_hash", Avro::String(hash)),
    ];
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.clone(),
        SuppliedSchema::new(Some("ticketing.users.UserSignedUp".into()), SchemaType::Avro, avsc.into()),
    );
    let bytes = AvroEncoder::new(SrSettings::new(app.registry_url())).encode(fields, strategy).await.unwrap();
    let producer = platform::log::LogProducer::new(log).unwrap();
    producer.append(&topic, email.as_bytes(), &bytes, &[("event_type", b"UserSignedUp")]).await.unwrap();
    user_id
}

#[tokio::test(flavor = "multi_thread")]
async fn the_migration_seals_sign_ups_written_in_clear_and_their_users_still_sign_in() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let log = deployment.log();
    let app = deployment.spawn().await;
    let legacy_id = legacy_sign_up(&app, &log, "old.timer@example.com", "old-pw-1").await;
    let modern = app.browser().signup("new.comer@example.com", "new-pw-1").await;
    assert_eq!(modern.status, StatusCode::CREATED);
    // Before the migration the old user signs in, the email stays taken, and erasure is
    // refused: no key deletion could erase data in clear.
    let mut signed_in = StatusCode::BAD_REQUEST;
    for _ in 0..50 {
        signed_in = sign_in(&app, "old.timer@example.com", "old-pw-1").await;
        if signed_in == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(signed_in, StatusCode::OK, "a user signed up before sealing signs in");
    let taken = app.browser().signup("Old.Timer@example.com", "other-pw").await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST, "{taken:?}");
    assert_eq!(forget_route(&app, &legacy_id, Some(ADMIN_TOKEN)).await, StatusCode::CONFLICT);
    assert!(!holding(&raw_records(&log).await, "old.timer@example.com").is_empty(), "in clear before");
    app.stop().await;

    let dry = deployment.tool(&["users", "migrate", "--dry-run"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success() && stderr.contains("1 sign-ups hold personal data in clear"), "{stderr}");
    let migrated = deployment.tool(&["users", "migrate"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&migrated.stderr);
    assert!(migrated.status.success(), "{stderr}");
    assert!(stderr.contains("1 sign-ups sealed"), "{stderr}");

    let after = raw_records(&log).await;
    for needle in ["old.timer@example.com", "new.comer@example.com", "$argon2"] {
        assert!(holding(&after, needle).is_empty(), "{needle} in {:?}", holding(&after, needle));
    }
    let again = deployment.tool(&["users", "migrate"]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to migrate"));

    // Both users sign in after the migration; the old one can now be forgotten.
    let app = deployment.spawn().await;
    assert_eq!(sign_in(&app, "old.timer@example.com", "old-pw-1").await, StatusCode::OK);
    assert_eq!(sign_in(&app, "new.comer@example.com", "new-pw-1").await, StatusCode::OK);
    assert_eq!(forget_route(&app, &legacy_id, Some(ADMIN_TOKEN)).await, StatusCode::NO_CONTENT);
    assert_eq!(sign_in(&app, "old.timer@example.com", "old-pw-1").await, StatusCode::BAD_REQUEST);
    app.stop().await;
}
