//! The bundled schema registry against a real local broker, driven by the
//! `schema_registry_converter` client the services use, plus raw HTTP for the rest of the API.

use std::error::Error as _;
use std::net::SocketAddr;

use apache_avro::types::Value;
use platform::local::LocalKafka;
use platform::log::LogConfig;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, get_all_versions, get_schema_by_id, get_schema_by_subject,
    is_compatible_schema, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    RawError, SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use schemas::registry::{SchemaRegistry, router};
use serde_json::{Value as Json, json};
use tokio::task::JoinHandle;

const PING_V1: &str = r#"{"type":"record","name":"Ping","namespace":"ticketing.test","fields":[
    {"name":"id","type":"string"},
    {"name":"n","type":"long"}
]}"#;
/// A new field without a default: not BACKWARD compatible with v1.
const PING_V2_NO_DEFAULT: &str = r#"{"type":"record","name":"Ping","namespace":"ticketing.test","fields":[
    {"name":"id","type":"string"},
    {"name":"n","type":"long"},
    {"name":"venue","type":"string"}
]}"#;
/// A new field with a default: BACKWARD compatible with v1.
const PING_V2_DEFAULT: &str = r#"{"type":"record","name":"Ping","namespace":"ticketing.test","fields":[
    {"name":"id","type":"string"},
    {"name":"n","type":"long"},
    {"name":"note","type":["null","string"],"default":null}
]}"#;
const PING: &str = "ticketing.test.Ping";

/// A registry served on a free port, on the broker this test binary shares or on one of its
/// own in a temporary directory.
struct TestApp {
    broker: Option<LocalKafka>,
    config: LogConfig,
    server: JoinHandle<()>,
    url: String,
    http: reqwest::Client,
    dir: Option<tempfile::TempDir>,
}

async fn serve(registry: SchemaRegistry) -> (JoinHandle<()>, String) {
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, router(registry)).await.expect("the registry server runs");
    });
    (server, url)
}

impl TestApp {
    /// On the shared broker, in a namespace of its own.
    async fn spawn() -> TestApp {
        let servers = platform::local::shared::kafka().await.bootstrap_servers();
        Self::open(servers, None, None).await
    }

    /// On a broker of its own, which the test may stop and start.
    async fn spawn_with_own_broker() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let broker = LocalKafka::start(dir.path(), 0).await.expect("the local broker starts");
        Self::open(broker.bootstrap_servers(), Some(broker), Some(dir)).await
    }

    async fn open(servers: String, broker: Option<LocalKafka>, dir: Option<tempfile::TempDir>) -> TestApp {
        let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
        let config = LogConfig::new(servers, namespace);
        let registry = SchemaRegistry::open(&config).await.expect("the registry opens");
        let (server, url) = serve(registry).await;
        TestApp { broker, config, server, url, http: reqwest::Client::new(), dir }
    }

    /// Stops the server (dropping its registry) and serves a freshly opened one on a new port.
    async fn restart_registry(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        let registry = SchemaRegistry::open(&self.config).await.expect("the registry reopens");
        let (server, url) = serve(registry).await;
        self.server = server;
        self.url = url;
    }

    /// Stops the broker, keeping its data; [`TestApp::start_broker`] brings it back on the
    /// same port.
    async fn stop_broker(&mut self) {
        self.broker.take().expect("the broker runs").stop().await.expect("the broker stops");
    }

    async fn start_broker(&mut self) {
        let port: u16 = self.config.bootstrap_servers.rsplit_once(':').unwrap().1.parse().unwrap();
        let dir = self.dir.as_ref().expect("a test's own broker");
        let broker = LocalKafka::start(dir.path(), port).await.expect("the broker restarts");
        self.broker = Some(broker);
    }

    fn settings(&self) -> SrSettings {
        SrSettings::new(self.url.clone())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> (u16, Json) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            content_type.as_deref(),
            Some("application/vnd.schemaregistry.v1+json"),
            "{path}"
        );
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Json::String(text)))
    }

    async fn get(&self, path: &str) -> (u16, Json) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Json) -> (u16, Json) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Json) -> (u16, Json) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn stop(self) {
        self.server.abort();
        if let Some(broker) = self.broker {
            broker.stop().await.expect("the broker stops");
        }
    }
}

fn ping(schema: &str) -> SuppliedSchema {
    SuppliedSchema::new(Some(PING.to_string()), SchemaType::Avro, schema.to_string())
}

/// The registry's `error_code` behind a client error.
fn error_code(error: &SRCError) -> Option<u32> {
    error.source().and_then(|s| s.downcast_ref::<RawError>()).map(|raw| raw.error_code)
}

#[tokio::test]
async fn the_converter_client_registers_evolves_and_survives_a_restart() {
    let mut app = TestApp::spawn().await;
    let topic = "pings";
    let subject = format!("{topic}-{PING}");

    // Arrange / Act: the encoder auto-registers with TopicRecordNameStrategy, the decoder
    // fetches the schema by the id in the payload.
    let encoder = AvroEncoder::new(app.settings());
    let strategy =
        SubjectNameStrategy::TopicRecordNameStrategyWithSchema(topic.to_string(), ping(PING_V1));
    let bytes = encoder
        .encode(vec![("id", Value::String("p-1".into())), ("n", Value::Long(7))], strategy)
        .await
        .expect("encoding registers the schema");
    assert_eq!(bytes[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    assert_eq!(id, 1);
    let decoded = AvroDecoder::new(app.settings()).decode(Some(&bytes)).await.expect("decodes");
    assert_eq!(
        decoded.value,
        Value::Record(vec![
            ("id".into(), Value::String("p-1".into())),
            ("n".into(), Value::Long(7))
        ])
    );

    // Registering the same schema again is idempotent.
    let again = post_schema(&app.settings(), subject.clone(), ping(PING_V1)).await.unwrap();
    assert_eq!(again.id, id);
    assert_eq!(get_all_versions(&app.settings(), subject.clone()).await.unwrap(), vec![1]);

    // The same schema under another subject gets the same id and its own version 1.
    let other =
        post_schema(&app.settings(), format!("others-{PING}"), ping(PING_V1)).await.unwrap();
    assert_eq!(other.id, id);

    // Latest by subject.
    let latest = get_schema_by_subject(
        &app.settings(),
        &SubjectNameStrategy::TopicRecordNameStrategy(topic.to_string(), PING.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(
        (latest.id, latest.version, latest.subject.as_deref()),
        (id, Some(1), Some(subject.as_str()))
    );

    // An incompatible v2 is refused under the default BACKWARD level ...
    assert!(
        !is_compatible_schema(&app.settings(), subject.clone(), ping(PING_V2_NO_DEFAULT))
            .await
            .unwrap()
    );
    let refused =
        post_schema(&app.settings(), subject.clone(), ping(PING_V2_NO_DEFAULT)).await.unwrap_err();
    assert_eq!(error_code(&refused), Some(409), "{refused}");
    let (status, body) = app
        .post(
            &format!("/compatibility/subjects/{subject}/versions/latest?verbose=true"),
            json!({"schema": PING_V2_NO_DEFAULT}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["is_compatible"], json!(false));
    assert!(body["messages"][0].as_str().unwrap().contains("venue"), "{body}");

    // ... a compatible one is accepted ...
    assert!(
        is_compatible_schema(&app.settings(), subject.clone(), ping(PING_V2_DEFAULT))
            .await
            .unwrap()
    );
    let v2 = post_schema(&app.settings(), subject.clone(), ping(PING_V2_DEFAULT)).await.unwrap();
    assert_eq!(v2.id, 2);

    // ... and the incompatible one is accepted once the subject's level is NONE.
    let (status, body) =
        app.put(&format!("/config/{subject}"), json!({"compatibility": "NONE"})).await;
    assert_eq!((status, body), (200, json!({"compatibility": "NONE"})));
    let v3 = post_schema(&app.settings(), subject.clone(), ping(PING_V2_NO_DEFAULT)).await.unwrap();
    assert_eq!(v3.id, 3);
    assert_eq!(get_all_versions(&app.settings(), subject.clone()).await.unwrap(), vec![1, 2, 3]);
    let mut subjects = get_all_subjects(&app.settings()).await.unwrap();
    subjects.sort();
    assert_eq!(subjects, vec![format!("others-{PING}"), subject.clone()]);

    // Restart: a new registry replays the topic and answers the same.
    app.restart_registry().await;
    assert_eq!(get_all_versions(&app.settings(), subject.clone()).await.unwrap(), vec![1, 2, 3]);
    let by_id = get_schema_by_id(2, &app.settings()).await.unwrap();
    assert_eq!(by_id.schema, PING_V2_DEFAULT);
    let (_, v3_body) = app.get(&format!("/subjects/{subject}/versions/3")).await;
    assert_eq!(v3_body["id"], json!(3));
    let (_, level) = app.get(&format!("/config/{subject}")).await;
    assert_eq!(level, json!({"compatibilityLevel": "NONE"}));
    // Ids keep counting from where they were, and old payloads still decode.
    let (_, fresh) = app
        .post(
            &format!("/subjects/fresh-{PING}/versions"),
            json!({"schema": r#"{"type":"string"}"#}),
        )
        .await;
    assert_eq!(fresh, json!({"id": 4}));
    let decoded =
        AvroDecoder::new(app.settings()).decode(Some(&bytes)).await.expect("decodes after restart");
    assert!(matches!(decoded.value, Value::Record(_)));

    app.stop().await;
}

#[tokio::test]
async fn the_rest_api_answers_in_confluents_shape() {
    let app = TestApp::spawn().await;
    let subject = "s-ticketing.test.Ping";

    let (status, body) =
        app.post(&format!("/subjects/{subject}/versions"), json!({"schema": PING_V1})).await;
    assert_eq!((status, body), (200, json!({"id": 1})));

    // Lookup.
    let (status, body) =
        app.post(&format!("/subjects/{subject}"), json!({"schema": PING_V1})).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"subject": subject, "id": 1, "version": 1, "schema": PING_V1}));
    let (status, body) =
        app.post(&format!("/subjects/{subject}"), json!({"schema": PING_V2_DEFAULT})).await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40403)));
    let (status, body) = app.post("/subjects/nobody", json!({"schema": PING_V1})).await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40401)));

    // Versions.
    let (status, body) = app.get(&format!("/subjects/{subject}/versions/latest")).await;
    assert_eq!((status, body["version"].clone(), body["id"].clone()), (200, json!(1), json!(1)));
    let (status, body) = app.get(&format!("/subjects/{subject}/versions/2")).await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40402)));
    let (status, body) = app.get(&format!("/subjects/{subject}/versions/0")).await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42202)));
    let (status, body) = app.get("/subjects/nobody/versions/1").await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40401)));
    let (status, body) = app.get("/subjects/nobody/versions").await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40401)));
    let (status, body) = app.get(&format!("/subjects/{subject}/versions/1/schema")).await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], json!("Ping"));

    // Schemas by id.
    let (status, body) = app.get("/schemas/ids/1").await;
    assert_eq!((status, body), (200, json!({"schema": PING_V1})));
    let (status, body) = app.get("/schemas/ids/99").await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40403)));
    let (status, body) = app.get("/schemas/ids/1/versions").await;
    assert_eq!((status, body), (200, json!([{"subject": subject, "version": 1}])));

    // Invalid input.
    let (status, body) = app
        .post(&format!("/subjects/{subject}/versions"), json!({"schema": "{\"type\":\"nope\"}"}))
        .await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
    let (status, body) = app
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
        )
        .await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
    let malformed = app
        .http
        .post(format!("{}/subjects/{subject}/versions", app.url))
        .header("content-type", "application/json")
        .body("{\"schema\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    let body: Json = malformed.json().await.unwrap();
    assert_eq!(body["error_code"], json!(400));
    let (status, body) =
        app.post(&format!("/subjects/{subject}/versions"), json!({"schema": 5})).await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(422)));

    // Config.
    let (status, body) = app.get("/config").await;
    assert_eq!((status, body), (200, json!({"compatibilityLevel": "BACKWARD"})));
    let (status, body) = app.get(&format!("/config/{subject}")).await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40408)));
    let (status, body) = app.get(&format!("/config/{subject}?defaultToGlobal=true")).await;
    assert_eq!((status, body), (200, json!({"compatibilityLevel": "BACKWARD"})));
    let (status, body) = app.put("/config", json!({"compatibility": "SIDEWAYS"})).await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42203)));
    let (status, body) = app.put("/config", json!({"compatibility": "FULL_TRANSITIVE"})).await;
    assert_eq!((status, body), (200, json!({"compatibility": "FULL_TRANSITIVE"})));
    let (_, body) = app.get(&format!("/config/{subject}?defaultToGlobal=true")).await;
    assert_eq!(body, json!({"compatibilityLevel": "FULL_TRANSITIVE"}));

    // Compatibility against a missing subject: true without a version, 40401 with one.
    let (status, body) =
        app.post("/compatibility/subjects/nobody/versions", json!({"schema": PING_V1})).await;
    assert_eq!((status, body), (200, json!({"is_compatible": true})));
    let (status, body) = app
        .post("/compatibility/subjects/nobody/versions/latest", json!({"schema": PING_V1}))
        .await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40401)));

    // Unknown routes.
    let (status, body) = app.get("/nope").await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(404)));

    app.stop().await;
}

#[tokio::test]
async fn a_write_while_the_log_is_down_fails_with_a_500_and_changes_nothing() {
    let mut app = TestApp::spawn_with_own_broker().await;
    let subject = "down-ticketing.test.Ping";
    let (_, body) =
        app.post(&format!("/subjects/{subject}/versions"), json!({"schema": PING_V1})).await;
    assert_eq!(body, json!({"id": 1}));

    app.stop_broker().await;
    let (status, body) = app
        .post(&format!("/subjects/{subject}/versions"), json!({"schema": PING_V2_DEFAULT}))
        .await;
    assert_eq!(status, 500, "{body}");
    let code = body["error_code"].as_u64().unwrap();
    assert!(code == 50001 || code == 50002, "{body}");
    // Reads are still answered from memory, and nothing changed.
    let (status, body) = app.get(&format!("/subjects/{subject}/versions")).await;
    assert_eq!((status, body), (200, json!([1])));

    // Back up: the registry catches up with the log and takes writes again.
    app.start_broker().await;
    // The producer may need a moment to reconnect, so retry like any client of a recovering
    // service would.
    let started = std::time::Instant::now();
    let (status, body) = loop {
        let (status, body) = app
            .post(&format!("/subjects/{subject}/versions"), json!({"schema": PING_V2_DEFAULT}))
            .await;
        if status != 500 || started.elapsed() > std::time::Duration::from_secs(30) {
            break (status, body);
        }
    };
    assert_eq!((status, body), (200, json!({"id": 2})));
    app.restart_registry().await;
    let (_, body) = app.get(&format!("/subjects/{subject}/versions")).await;
    assert_eq!(body, json!([1, 2]));

    app.stop().await;
}

/// Fields for every field of `avsc`, by name, from `values`.
fn record_for(avsc: &str, values: &[(&'static str, Value)]) -> Vec<(&'static str, Value)> {
    let apache_avro::Schema::Record(record) = apache_avro::Schema::parse_str(avsc).unwrap() else {
        panic!("not a record schema");
    };
    record
        .fields
        .iter()
        .map(|field| {
            values
                .iter()
                .find(|(name, _)| *name == field.name)
                .cloned()
                .unwrap_or_else(|| panic!("no value for field {}", field.name))
        })
        .collect()
}

fn envelope_values(version: i64) -> Vec<(&'static str, Value)> {
    vec![
        ("event_id", Value::Uuid(uuid::Uuid::new_v4())),
        ("aggregate_id", Value::String("t-1".into())),
        ("aggregate_version", Value::Long(version)),
        ("command_id", Value::String(format!("c-{version}"))),
        ("command_event_index", Value::Int(0)),
        ("command_event_count", Value::Int(1)),
        ("occurred_at", Value::TimestampMillis(1_700_000_000_000)),
        ("correlation_id", Value::String("corr".into())),
        ("causation_id", Value::Union(0, Box::new(Value::Null))),
    ]
}

#[tokio::test]
async fn records_of_every_registered_version_read_as_the_current_schema() {
    use platform::aggregate::Envelope;
    use platform::codec::EventCodec;
    use schemas::codec::AvroCodec;
    use schemas::tickets::{TicketCreated, TicketEvent};

    // Arrange: each registered version of TicketCreated, registered in order (the registry
    // checks each against the one before, renamed field and all), writes one record.
    let app = TestApp::spawn().await;
    let topic = format!("{}.tickets", app.config.namespace);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro/registered/tickets");
    let mut written = Vec::new();
    for version in 1..=3 {
        let avsc = std::fs::read_to_string(dir.join(format!("TicketCreated.v{version}.avsc"))).unwrap();
        let mut values = envelope_values(version);
        values.extend([
            ("title", Value::String(format!("written by v{version}"))),
            ("price_cents", Value::Long(1250)),
            ("price_minor", Value::Long(1500)),
            ("currency", Value::String("JPY".into())),
            ("user_id", Value::String("seller".into())),
        ]);
        let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            topic.clone(),
            SuppliedSchema::new(Some("ticketing.tickets.TicketCreated".into()), SchemaType::Avro, avsc.clone()),
        );
        // An encoder keeps the first schema it used per subject: one per version.
        let encoder = AvroEncoder::new(app.settings());
        let bytes = encoder.encode(record_for(&avsc, &values), strategy).await.unwrap_or_else(|e| {
            panic!("the registry takes v{version} after the versions before it: {e}")
        });
        written.push(bytes);
    }

    // Act: the services' codec reads them all.
    let codec = AvroCodec::<TicketEvent>::new(topic, app.settings());
    let mut read = Vec::new();
    for bytes in &written {
        let Envelope { metadata, event } = codec.decode(bytes).await.expect("every version decodes");
        read.push((metadata.command_event_count, event));
    }

    // Assert: v1 and v2 prices were cents of USD; v3 names its currency.
    let created = |title: &str, price_minor, currency: &str| {
        TicketEvent::Created(TicketCreated {
            title: title.into(),
            price_minor,
            currency: currency.into(),
            user_id: "seller".into(),
        })
    };
    assert_eq!(
        read,
        vec![
            (1, created("written by v1", 1250, "USD")),
            (1, created("written by v2", 1250, "USD")),
            (1, created("written by v3", 1500, "JPY")),
        ]
    );
    app.stop().await;
}
