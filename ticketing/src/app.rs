//! The application: every component (or some) wired to the log, the registry and the store,
//! behind one HTTP port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tower::Layer;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use expiration_worker::{ExpirationHealth, ExpirationWorker, run_expiration};
use orders_command::domain::Order;
use orders_command::saga::{OrderSaga, run_saga};
use payments_command::domain::Payment;
use payments_command::gateway::{PaymentGateway, SandboxGateway, StripeGateway};
use payments_command::settlement::{Settlement, run_reconciler};
use platform::aggregate::Aggregate;
use platform::local::{LocalCassandra, LocalKafka};
use platform::codec::EventCodec;
use platform::command::CommandPipeline;
use platform::forwarding::{CommandService, Forwardable};
use platform::http::{BODY_LIMIT_BYTES, not_found};
use platform::inbox::run_inbox;
use platform::log::{DeadLetters, EndOffsets, LogConfig, TopicSpec, ensure_topics};
use platform::ownership::PartitionOwnership;
use platform::projection::{Projection, ProjectorHealth, ReadModels, run_projector};
use platform::peer::PeerKeys;
use platform::session::SessionKeys;
use platform::store::{EmbeddedStore, ReadStore, ScyllaStore};
use projectors::orders::OrderProjector;
use projectors::tickets::TicketProjector;
use schemas::codec::{AvroCodec, registry_settings};
use schemas::events::AvroEvent;
use schemas::orders::OrderEvent;
use schemas::payments::PaymentEvent;
use schemas::registry::SchemaRegistry;
use schemas::tickets::TicketEvent;
use schemas::users::UserEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tickets_command::domain::Ticket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use users_command::domain::User;

use crate::settings::{Settings, StoreSettings};

/// The components `ticketing serve` can run on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    /// Sign-up, sign-in, sign-out, current user.
    Users,
    /// Ticket commands (`POST /api/tickets`, `PUT /api/tickets/{id}`).
    Tickets,
    /// Order commands (`POST /api/orders`, `DELETE /api/orders/{id}`) and the process manager.
    Orders,
    /// `POST /api/payments`.
    Payments,
    /// Fires order payment deadlines.
    Expiration,
    /// The projector of the tickets read model.
    ProjectorTickets,
    /// The projector of the orders read model.
    ProjectorOrders,
    /// The read side (`GET /api/…`).
    QueryApi,
    /// The bundled Confluent-compatible schema registry.
    SchemaRegistry,
}

impl Component {
    /// Every component, as `ticketing up` runs them.
    pub const ALL: [Component; 9] = [
        Component::SchemaRegistry,
        Component::Users,
        Component::Tickets,
        Component::Orders,
        Component::Payments,
        Component::Expiration,
        Component::ProjectorTickets,
        Component::ProjectorOrders,
        Component::QueryApi,
    ];
}

/// The infrastructure this process started itself because none was configured: a Kafka
/// broker (no `KAFKA_BOOTSTRAP_SERVERS`) and a Cassandra node (`TICKETING_STORE=cql` without
/// `SCYLLA_URI`), both with their data under the data directory.
#[derive(Default)]
pub struct LocalServices {
    kafka: Option<LocalKafka>,
    cassandra: Option<LocalCassandra>,
}

impl LocalServices {
    /// Stops what was started, cleanly.
    pub async fn stop(self) -> anyhow::Result<()> {
        let kafka = async {
            match self.kafka {
                Some(kafka) => kafka.stop().await.context("Failed to stop the local Kafka broker"),
                None => Ok(()),
            }
        };
        let cassandra = async {
            match self.cassandra {
                Some(node) => node.stop().await.context("Failed to stop the local Cassandra node"),
                None => Ok(()),
            }
        };
        let (kafka, cassandra) = tokio::join!(kafka, cassandra);
        kafka.and(cassandra)
    }
}

/// Opens the configured read store, starting the local Cassandra node into `local` when the
/// store is CQL without contact points.
pub async fn open_store(settings: &Settings, local: &mut LocalServices) -> anyhow::Result<Arc<dyn ReadStore>> {
    Ok(match &settings.store {
        StoreSettings::Embedded { path } => Arc::new(
            EmbeddedStore::open(path).with_context(|| format!("Failed to open the store at {}", path.display()))?,
        ),
        StoreSettings::Scylla { uri, local_port, keyspace_prefix, replication, credentials, options } => {
            let uri = match uri {
                Some(uri) => uri.clone(),
                None => {
                    if local.cassandra.is_none() {
                        let dir = settings.data_dir.join("cassandra");
                        let node = LocalCassandra::start(&dir, *local_port)
                            .await
                            .context("Failed to start the local Cassandra node")?;
                        tracing::info!(message = "Started the local Cassandra node.", uri = %node.uri(), dir = %dir.display());
                        local.cassandra = Some(node);
                    }
                    local.cassandra.as_ref().map(LocalCassandra::uri).expect("started above")
                }
            };
            Arc::new(
                ScyllaStore::connect(
                    &uri,
                    keyspace_prefix,
                    replication,
                    credentials.as_ref().map(|(user, password)| (user.clone(), password.expose_secret().to_string())),
                    options,
                )
                    .await
                    .with_context(|| format!("Failed to connect to the CQL store at {uri}"))?,
            )
        }
    })
}

/// The log to use: the configured one, or a local Kafka broker started into `local`, with its
/// log under the data dir.
pub async fn connect_log(settings: &Settings, local: &mut LocalServices) -> anyhow::Result<LogConfig> {
    match &settings.log {
        Some(config) => Ok(config.clone()),
        None => {
            let dir = settings.data_dir.join("kafka");
            let broker = LocalKafka::start(&dir, settings.broker_port)
                .await
                .context("Failed to start the local Kafka broker")?;
            tracing::info!(message = "Started the local Kafka broker.", addr = %broker.bootstrap_servers(), dir = %dir.display());
            // Partitions, fetch wait and topic configs from the environment still apply.
            let config = LogConfig::new(broker.bootstrap_servers(), settings.namespace.clone()).with_env_settings()?;
            local.kafka = Some(broker);
            Ok(config)
        }
    }
}

/// The event topics of this deployment, and the inboxes of the aggregates process managers
/// send commands to.
pub fn topics(config: &LogConfig) -> Vec<TopicSpec> {
    let events = [UserEvent::TOPIC, TicketEvent::TOPIC, OrderEvent::TOPIC, PaymentEvent::TOPIC].map(|name| config.topic(name));
    let inboxes = [TicketEvent::TOPIC, OrderEvent::TOPIC].map(|name| platform::inbox::inbox_topic(&config.topic(name)));
    events
        .into_iter()
        .chain(inboxes)
        .map(|name| TopicSpec { name, partitions: config.partitions, compacted: false, config: Vec::new() })
        .chain([platform::vault::SubjectKeys::topic_spec(config)])
        .collect()
}

/// Creates what a deployment needs before its components start: topics (the registry's
/// compacted), and the read store's schema (probed with a write in the catalog).
pub async fn init(settings: &Settings) -> anyhow::Result<()> {
    let mut local = LocalServices::default();
    let log = connect_log(settings, &mut local).await?;
    ensure_topics(&log, &topics(&log)).await.context("Failed to create the topics")?;
    DeadLetters::open(&log).await.context("Failed to create the dead-letter topic")?;
    if settings.registry_url.is_none() {
        SchemaRegistry::open(&log).await.context("Failed to create the schema registry topic")?;
    }
    let store = open_store(settings, &mut local).await?;
    store.ping().await.context("The read store does not answer")?;
    let read_models = ReadModels::new(store);
    for read_model in crate::rebuild::READ_MODELS {
        let namespace = read_models.current(read_model).await?;
        read_models.record_progress(&namespace, 0, 0).await.context("Failed to write to the read store")?;
    }
    tracing::info!(message = "Initialised.", topics = ?topics(&log).iter().map(|t| t.name.clone()).collect::<Vec<_>>());
    local.stop().await
}

/// The order saga of this deployment.
pub async fn order_saga(ends: &EndOffsets, codecs: &Codecs, dead_letters: DeadLetters) -> anyhow::Result<OrderSaga> {
    let partitions = |topic: String| async {
        let count = ends.partition_count(&topic).await.with_context(|| format!("Failed to look up {topic}"))?;
        Ok::<_, anyhow::Error>((topic, count))
    };
    Ok(OrderSaga {
        orders_codec: codecs.orders.clone(),
        payments_codec: codecs.payments.clone(),
        tickets_topic: partitions(codecs.tickets.topic().to_string()).await?,
        orders_topic: partitions(codecs.orders.topic().to_string()).await?,
        dead_letters,
    })
}

/// The schema registry a one-off command (rebuild, dead letters) decodes with: the configured
/// one, or the bundled one (its state is in the log) served on a loopback port until the
/// returned task is aborted.
pub async fn tool_registry(
    settings: &Settings,
    log: &LogConfig,
) -> anyhow::Result<(String, Option<JoinHandle<std::io::Result<()>>>)> {
    match &settings.registry_url {
        Some(url) => Ok((url.clone(), None)),
        None => {
            let registry = SchemaRegistry::open(log).await.context("Failed to open the schema registry")?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}", listener.local_addr()?);
            let server = tokio::spawn(async move { axum::serve(listener, schemas::registry::router(registry)).await });
            Ok((url, Some(server)))
        }
    }
}

/// The codecs of every topic.
#[derive(Clone)]
pub struct Codecs {
    /// `users`.
    pub users: Arc<AvroCodec<UserEvent>>,
    /// `tickets`.
    pub tickets: Arc<AvroCodec<TicketEvent>>,
    /// `orders`.
    pub orders: Arc<AvroCodec<OrderEvent>>,
    /// `payments`.
    pub payments: Arc<AvroCodec<PaymentEvent>>,
}

impl Codecs {
    /// Codecs for the deployment's topics against the registry at `registry_url`.
    pub fn new(log: &LogConfig, registry_url: &str) -> anyhow::Result<Self> {
        let settings = registry_settings(registry_url)?;
        Ok(Self {
            users: Arc::new(AvroCodec::new(log.topic(UserEvent::TOPIC), settings.clone())),
            tickets: Arc::new(AvroCodec::new(log.topic(TicketEvent::TOPIC), settings.clone())),
            orders: Arc::new(AvroCodec::new(log.topic(OrderEvent::TOPIC), settings.clone())),
            payments: Arc::new(AvroCodec::new(log.topic(PaymentEvent::TOPIC), settings)),
        })
    }

    /// Registers every schema, waiting (bounded) for a registry that is still starting.
    async fn register_all(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let result = async {
                self.users.register_all().await?;
                self.tickets.register_all().await?;
                self.orders.register_all().await?;
                self.payments.register_all().await
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(platform::codec::CodecError::RegistryUnavailable(reason))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::info!(message = "Waiting for the schema registry.", %reason);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(error) => return Err(error).context("Failed to register the event schemas"),
            }
        }
    }
}

/// The command side of one aggregate type: owning its partitions (`own`) or only sending
/// commands to their owners.
pub(crate) async fn command_side<A>(
    name: &str,
    log: &LogConfig,
    codec: Arc<dyn EventCodec<A::Event>>,
    own: Option<String>,
    keys: &PeerKeys,
) -> anyhow::Result<Arc<CommandService<A>>>
where
    A: Forwardable,
    A::Command: Serialize + DeserializeOwned,
    A::Error: Serialize + DeserializeOwned,
{
    let topic = codec.topic().to_string();
    let pipeline = Arc::new(CommandPipeline::<A>::start(log, codec)?);
    let ownership = match own {
        Some(url) => PartitionOwnership::join(log, &topic, url).await,
        None => PartitionOwnership::observe(log, &topic).await,
    }
    .with_context(|| format!("Failed to follow the owners of {topic}"))?;
    Ok(Arc::new(CommandService::new(name, pipeline, Some(Arc::new(ownership)), keys.clone())))
}

/// Readiness of one command side: caught up with the log, and (when owning) all owners known.
trait CommandReadiness: Send + Sync {
    fn checks(&self) -> Vec<(String, bool)>;
    fn owners(&self) -> serde_json::Value;
    fn pipeline_ready(&self) -> bool;
}

struct Side<A: Aggregate> {
    name: &'static str,
    service: Arc<CommandService<A>>,
    owning: bool,
}

impl<A> CommandReadiness for Side<A>
where
    A: Forwardable,
    A::Command: Serialize + DeserializeOwned,
    A::Error: Serialize + DeserializeOwned,
{
    fn checks(&self) -> Vec<(String, bool)> {
        let mut checks = vec![(format!("{}_commands", self.name), self.service.pipeline().is_ready())];
        if let (true, Some(ownership)) = (self.owning, self.service.ownership()) {
            checks.push((format!("{}_owners", self.name), ownership.is_complete()));
        }
        checks
    }

    fn owners(&self) -> serde_json::Value {
        self.service.ownership().map_or(serde_json::Value::Null, |o| {
            let directory: serde_json::Map<String, serde_json::Value> =
                o.directory().into_iter().map(|(p, url)| (p.to_string(), url.into())).collect();
            directory.into()
        })
    }

    fn pipeline_ready(&self) -> bool {
        self.service.pipeline().is_ready()
    }
}

#[derive(Clone)]
struct Readiness {
    sides: Vec<Arc<dyn CommandReadiness>>,
    projectors: Vec<(&'static str, Arc<ProjectorHealth>)>,
    expiration: Option<Arc<ExpirationHealth>>,
    store: Option<Arc<dyn ReadStore>>,
    registry_url: String,
    http: reqwest::Client,
    max_lag: i64,
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let mut checks = serde_json::Map::new();
    let mut owners = serde_json::Map::new();
    for side in &readiness.sides {
        let side_checks = side.checks();
        if let Some((name, _)) = side_checks.first() {
            owners.insert(name.trim_end_matches("_commands").to_string(), side.owners());
        }
        for (name, ok) in side_checks {
            checks.insert(name, ok.into());
        }
    }
    for (name, projector) in &readiness.projectors {
        checks.insert(format!("{name}_projector"), projector.is_assigned().into());
        checks.insert(format!("{name}_projection_caught_up"), projector.caught_up(readiness.max_lag).into());
    }
    if let Some(expiration) = &readiness.expiration {
        checks.insert("expiration_caught_up".into(), expiration.is_caught_up().into());
    }
    if let Some(store) = &readiness.store {
        checks.insert("read_store".into(), store.ping().await.is_ok().into());
    }
    let registry = readiness
        .http
        .get(format!("{}/subjects", readiness.registry_url))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    checks.insert("schema_registry".into(), registry.into());
    let ready = checks.values().all(|v| v.as_bool() == Some(true));
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::json!({ "ready": ready, "checks": checks, "owners": owners })))
}

/// A running application.
pub struct Application {
    addr: SocketAddr,
    internal_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    internal_server: Option<JoinHandle<std::io::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
    sides: Vec<Arc<dyn CommandReadiness>>,
    local: LocalServices,
}

/// Keeps the audit gauges showing the outcome each read model's last audit recorded in the
/// catalog (audits run as separate commands, from cron or CI).
async fn publish_audits(read_models: ReadModels, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    loop {
        match read_models.audits().await {
            Ok(audits) => {
                for audit in audits {
                    platform::metrics::METRICS.audit(&audit.read_model, audit.differences, audit.finished_at);
                }
            }
            Err(error) => tracing::warn!(message = "Failed to read the last audits.", %error),
        }
        tokio::select! {
            _ = tokio::time::sleep(AUDIT_METRICS_REFRESH) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// How often the audit gauges are refreshed from the catalog.
const AUDIT_METRICS_REFRESH: Duration = Duration::from_secs(5);

fn spawn_logged<E: std::fmt::Display + Send + 'static>(
    what: &'static str,
    task: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = task.await {
            tracing::error!(message = "A background component stopped.", component = what, %error);
        }
    })
}

impl Application {
    /// Starts the given components and serves them on `settings.addr`.
    pub async fn build(settings: Settings, components: &[Component]) -> anyhow::Result<Self> {
        let has = |c: Component| components.contains(&c);
        let mut local = LocalServices::default();
        let log = connect_log(&settings, &mut local).await?;
        ensure_topics(&log, &topics(&log)).await.context("Failed to create the topics")?;
        // Before the command sides start: they read it for operators' resolutions.
        let dead_letters = DeadLetters::open(&log).await.context("Failed to create the dead-letter topic")?;
        // One client for partition counts and ends: the order saga's and the query API's.
        let log_ends = (has(Component::Orders) || has(Component::QueryApi))
            .then(|| EndOffsets::new(&log))
            .transpose()?
            .map(Arc::new);

        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("Failed to bind {}", settings.addr))?;
        let addr = listener.local_addr()?;
        // Peers forward commands to the internal listener, never to the public one.
        let owns_partitions = [Component::Users, Component::Tickets, Component::Orders, Component::Payments]
            .into_iter()
            .any(has);
        let internal_listener = if owns_partitions {
            let bound = tokio::net::TcpListener::bind(settings.internal_addr)
                .await
                .with_context(|| format!("Failed to bind the internal address {}", settings.internal_addr))?;
            Some(bound)
        } else {
            None
        };
        let internal_addr = internal_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let url = match (&settings.advertised_url, internal_addr) {
            (Some(url), _) => url.clone(),
            (None, Some(internal)) => format!("http://{internal}"),
            (None, None) => String::new(),
        };
        let registry_url = settings.registry_url.clone().unwrap_or_else(|| format!("http://{addr}"));

        let mut router = Router::new();
        if settings.registry_url.is_none() && has(Component::SchemaRegistry) {
            let registry = SchemaRegistry::open(&log).await.context("Failed to open the schema registry")?;
            // `/` is the web client's.
            router = router.merge(schemas::registry::routes(registry));
        }
        let codecs = Codecs::new(&log, &registry_url)?;
        let keys = SessionKeys::new(settings.jwt_key.expose_secret().as_bytes(), settings.session_ttl_seconds, settings.secure_cookie);
        let peer_keys = PeerKeys::from_secret(settings.jwt_key.expose_secret().as_bytes());
        let mut internal = Router::new();
        let needs_store = has(Component::ProjectorTickets) || has(Component::ProjectorOrders) || has(Component::QueryApi);
        let store = if needs_store { Some(open_store(&settings, &mut local).await?) } else { None };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut sides: Vec<Arc<dyn CommandReadiness>> = Vec::new();
        let own = |c: Component| has(c).then(|| url.clone());

        let users = if has(Component::Users) {
            Some(command_side::<User>("users", &log, codecs.users.clone(), own(Component::Users), &peer_keys).await?)
        } else {
            None
        };
        let tickets = if has(Component::Tickets) || has(Component::Orders) || has(Component::Payments) || has(Component::Expiration) {
            Some(command_side::<Ticket>("tickets", &log, codecs.tickets.clone(), own(Component::Tickets), &peer_keys).await?)
        } else {
            None
        };
        let orders = if has(Component::Orders) || has(Component::Payments) || has(Component::Expiration) {
            Some(command_side::<Order>("orders", &log, codecs.orders.clone(), own(Component::Orders), &peer_keys).await?)
        } else {
            None
        };
        let payments = if has(Component::Payments) {
            Some(command_side::<Payment>("payments", &log, codecs.payments.clone(), own(Component::Payments), &peer_keys).await?)
        } else {
            None
        };

        if let Some(users) = &users {
            let keys_topic = platform::vault::SubjectKeys::open(&log, settings.master_key.clone())
                .await
                .context("Failed to read the users' data keys")?;
            let vault = Arc::new(users_command::personal::PersonalDataVault::new(
                keys_topic,
                platform::vault::EmailIndex::new(&settings.master_key),
            ));
            router = router
                .merge(users_command::http::router(users_command::http::UserRoutesState {
                    commands: users.clone(),
                    keys: keys.clone(),
                    throttle: Arc::new(users_command::throttle::SignInThrottle::new(settings.sign_in_limits)),
                    proxies: settings.trusted_proxies.clone(),
                    vault,
                    admin_token: settings.admin_token.as_ref().map(|t| Arc::from(t.expose_secret())),
                }));
            internal = internal.merge(users.clone().internal_router());
            sides.push(Arc::new(Side { name: "users", service: users.clone(), owning: true }));
        }
        if let Some(tickets) = &tickets {
            if has(Component::Tickets) {
                router = router
                    .merge(tickets_command::http::router(tickets_command::http::TicketCommandState {
                        commands: tickets.clone(),
                        keys: keys.clone(),
                    }));
                internal = internal.merge(tickets.clone().internal_router());
                tasks.push(spawn_logged(
                    "tickets-inbox",
                    run_inbox(log.clone(), codecs.tickets.topic().to_string(), tickets.clone(), shutdown_rx.clone()),
                ));
            }
            sides.push(Arc::new(Side { name: "tickets", service: tickets.clone(), owning: has(Component::Tickets) }));
        }
        if let Some(orders) = &orders {
            sides.push(Arc::new(Side { name: "orders", service: orders.clone(), owning: has(Component::Orders) }));
        }
        if let Some(payments) = &payments {
            sides.push(Arc::new(Side { name: "payments", service: payments.clone(), owning: true }));
        }
        if let (true, Some(orders), Some(tickets)) = (has(Component::Orders), &orders, &tickets) {
            router = router
                .merge(orders_command::http::router(orders_command::http::OrderRoutesState {
                    orders: orders.clone(),
                    tickets: tickets.clone(),
                    keys: keys.clone(),
                    expiration_window_seconds: settings.expiration_window_seconds,
                }));
            internal = internal.merge(orders.clone().internal_router());
            let ends = log_ends.as_deref().expect("made for the orders component");
            let saga = order_saga(ends, &codecs, dead_letters.clone()).await?;
            tasks.push(spawn_logged("order-saga", run_saga(log.clone(), saga, shutdown_rx.clone())));
            tasks.push(spawn_logged(
                "orders-inbox",
                run_inbox(log.clone(), codecs.orders.topic().to_string(), orders.clone(), shutdown_rx.clone()),
            ));
        }
        if let (Some(payments), Some(orders), Some(tickets)) = (&payments, &orders, &tickets) {
            let gateway: Arc<dyn PaymentGateway> = match &settings.stripe_secret_key {
                Some(key) => Arc::new(StripeGateway::new(&settings.stripe_api_base, key.expose_secret())),
                None => Arc::new(SandboxGateway::default()),
            };
            let settlement = Arc::new(Settlement {
                payments: payments.clone(),
                orders: orders.clone(),
                tickets: tickets.clone(),
                gateway,
            });
            router = router
                .merge(payments_command::http::router(payments_command::http::PaymentRoutesState {
                    settlement: settlement.clone(),
                    keys: keys.clone(),
                }));
            internal = internal.merge(payments.clone().internal_router());
            let after = Duration::from_secs(settings.payment_reconcile_after_seconds);
            let stop = shutdown_rx.clone();
            tasks.push(spawn_logged("payments-reconciler", async move {
                run_reconciler(settlement, after, stop).await;
                Ok::<(), anyhow::Error>(())
            }));
        }
        let mut expiration = None;
        if let (true, Some(orders), Some(tickets)) = (has(Component::Expiration), &orders, &tickets) {
            let health = Arc::new(ExpirationHealth::default());
            let worker = ExpirationWorker {
                orders_codec: codecs.orders.clone(),
                tickets_codec: codecs.tickets.clone(),
                orders: orders.clone(),
                tickets: tickets.clone(),
            };
            tasks.push(spawn_logged(
                "expiration",
                run_expiration(log.clone(), worker, health.clone(), shutdown_rx.clone()),
            ));
            expiration = Some(health);
        }

        let mut projectors = Vec::new();
        if let Some(store) = &store {
            let mut wanted: Vec<(&'static str, Arc<dyn Projection>)> = Vec::new();
            if has(Component::ProjectorTickets) {
                wanted.push(("tickets", Arc::new(TicketProjector::new(codecs.tickets.clone()))));
            }
            if has(Component::ProjectorOrders) {
                wanted.push(("orders", Arc::new(OrderProjector::new(codecs.orders.clone()))));
            }
            // One catalog for the process: a query waiting for a write is woken by the progress
            // its projector records.
            let read_models = ReadModels::new(store.clone());
            for (name, projection) in wanted {
                let health = Arc::new(ProjectorHealth::default());
                tasks.push(spawn_logged(
                    "projector",
                    run_projector(
                        log.clone(),
                        projection,
                        read_models.clone(),
                        log.group(&format!("projector.{name}")),
                        health.clone(),
                        shutdown_rx.clone(),
                    ),
                ));
                projectors.push((name, health));
            }
            if has(Component::QueryApi) {
                tasks.push(spawn_logged("audit-metrics", publish_audits(read_models.clone(), shutdown_rx.clone())));
                let live = query_api::live::LiveFeed::new(settings.live);
                tasks.push(spawn_logged(
                    "live-feed",
                    live.clone().run(log.clone(), read_models.clone(), shutdown_rx.clone()),
                ));
                router = router.merge(query_api::router(query_api::QueryState {
                    read_models: read_models.clone(),
                    log_ends: log_ends.clone(),
                    live: Some(live),
                    keys: keys.clone(),
                    list_limit: settings.tickets_list_limit,
                    list_cache: Arc::new(query_api::ListCache::new(Duration::from_millis(settings.tickets_list_cache_ms))),
                }));
            }
        }

        let readiness = Readiness {
            sides: sides.clone(),
            projectors,
            expiration,
            store: store.clone(),
            registry_url: registry_url.clone(),
            http: reqwest::Client::new(),
            max_lag: settings.ready_max_lag,
        };
        let router = router
            .merge(
                Router::new()
                    .route("/healthz", get(healthz))
                    .route("/readyz", get(readyz))
                    .route("/metrics", get(platform::metrics::metrics_handler))
                    .with_state(readiness),
            )
            .fallback_service(crate::web::web_client(&settings.web_dir, settings.stripe_publishable_key.as_deref()))
            // Inside the key's layer: an answer past the deadline still names the key.
            .layer(axum::middleware::from_fn_with_state(
                platform::deadline::RequestLimits::new(Duration::from_millis(settings.request_timeout_ms), settings.max_in_flight),
                platform::deadline::limit_requests,
            ))
            .layer(axum::middleware::from_fn(platform::http::assign_idempotency_key))
            .layer(axum::middleware::from_fn(platform::metrics::track_http))
            .layer(axum::middleware::from_fn(platform::telemetry::trace_http))
            .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
            .layer(axum::middleware::map_response(platform::http::close_after_payload_too_large));

        let internal_server = internal_listener.map(|listener| {
            let internal = internal
                .fallback(not_found)
                .layer(axum::middleware::from_fn(platform::telemetry::trace_http))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
                .layer(axum::middleware::map_response(platform::http::close_after_payload_too_large));
            let mut stop = shutdown_rx.clone();
            tokio::spawn(async move {
                axum::serve(listener, internal)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            })
        });
        let mut stop = shutdown_rx.clone();
        let server = tokio::spawn(async move {
            let app = tower::util::MapRequestLayer::new(platform::http::trim_trailing_slash).layer(router);
            // The peer's address feeds the sign-in throttle (through trusted proxies only).
            axum::serve(
                listener,
                axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(app),
            )
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(message = "Listening.", %addr, internal = ?internal_addr, ?components);

        let writes_or_reads_events = components.iter().any(|c| *c != Component::QueryApi && *c != Component::SchemaRegistry);
        if writes_or_reads_events {
            codecs.register_all().await?;
        }
        Ok(Self { addr, internal_addr, shutdown, server, internal_server, tasks, sides, local })
    }

    /// The address the application listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The internal listener's address (command forwarding between instances), when this
    /// process runs a command service.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal_addr
    }

    /// Waits until every command side has caught up with the log.
    pub async fn wait_ready(&self) {
        while !self.sides.iter().all(|s| s.pipeline_ready()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs until Ctrl-C or SIGTERM, then stops.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!(message = "Stopping.");
        self.stop().await
    }

    /// Stops every component, the local broker and node last.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        if let Some(internal) = self.internal_server {
            let _ = tokio::time::timeout(Duration::from_secs(10), internal).await;
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        drop(self.sides);
        self.local.stop().await
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
