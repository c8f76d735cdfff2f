//! The application: every component (or one) wired to the log, the registry and the store,
//! behind one HTTP port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use platform::broker::LocalBroker;
use platform::codec::EventCodec;
use platform::command::CommandPipeline;
use platform::forwarding::CommandService;
use platform::ownership::PartitionOwnership;
use platform::http::{BODY_LIMIT_BYTES, not_found};
use platform::log::{LogConfig, TopicSpec, ensure_topics};
use platform::projection::{ProjectorHealth, ReadModels, run_projector};
use platform::session::SessionKeys;
use platform::store::{EmbeddedStore, ReadStore, ScyllaStore};
use projectors::tickets::TicketProjector;
use schemas::codec::{AvroCodec, registry_settings};
use schemas::events::AvroEvent;
use schemas::registry::SchemaRegistry;
use schemas::tickets::TicketEvent;
use tickets_command::domain::Ticket;
use tickets_command::http::TicketCommandState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settings::{Settings, StoreSettings};

/// The components `ticketing serve` can run on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    /// Ticket commands (`POST /api/tickets`, `PUT /api/tickets/{id}`).
    Tickets,
    /// The projector of the tickets read model.
    ProjectorTickets,
    /// The read side (`GET /api/…`).
    QueryApi,
    /// The bundled Confluent-compatible schema registry.
    SchemaRegistry,
}

impl Component {
    /// Every component, as `ticketing up` runs them.
    pub const ALL: [Component; 4] =
        [Component::SchemaRegistry, Component::Tickets, Component::ProjectorTickets, Component::QueryApi];
}

/// Opens the configured read store.
pub async fn open_store(settings: &StoreSettings) -> anyhow::Result<Arc<dyn ReadStore>> {
    Ok(match settings {
        StoreSettings::Embedded { path } => Arc::new(
            EmbeddedStore::open(path).with_context(|| format!("Failed to open the store at {}", path.display()))?,
        ),
        StoreSettings::Scylla { uri, keyspace_prefix, replication, credentials } => Arc::new(
            ScyllaStore::connect(uri, keyspace_prefix, replication, credentials.clone())
                .await
                .with_context(|| format!("Failed to connect to ScyllaDB at {uri}"))?,
        ),
    })
}

/// The log to use: the configured one, or a local broker started under the data dir.
pub async fn connect_log(settings: &Settings) -> anyhow::Result<(LogConfig, Option<LocalBroker>)> {
    match &settings.log {
        Some(config) => Ok((config.clone(), None)),
        None => {
            let dir = settings.data_dir.join("broker");
            let broker = LocalBroker::start(&dir, settings.broker_port)
                .await
                .context("Failed to start the local broker")?;
            tracing::info!(message = "Started the local broker.", addr = %broker.bootstrap_servers(), dir = %dir.display());
            let config = LogConfig::new(broker.bootstrap_servers(), settings.namespace.clone());
            Ok((config, Some(broker)))
        }
    }
}

/// The topics of this deployment.
pub fn topics(config: &LogConfig) -> Vec<TopicSpec> {
    vec![TopicSpec { name: config.topic(TicketEvent::TOPIC), partitions: config.partitions, compacted: false }]
}

/// Creates what a deployment needs before its components start: topics (the registry's
/// compacted), and the read store's schema (probed with a write in the catalog).
pub async fn init(settings: &Settings) -> anyhow::Result<()> {
    let (log, broker) = connect_log(settings).await?;
    ensure_topics(&log, &topics(&log)).await.context("Failed to create the topics")?;
    if settings.registry_url.is_none() {
        SchemaRegistry::open(&log).await.context("Failed to create the schema registry topic")?;
    }
    let store = open_store(&settings.store).await?;
    store.ping().await.context("The read store does not answer")?;
    let read_models = ReadModels::new(store);
    for read_model in crate::rebuild::READ_MODELS {
        let namespace = read_models.current(read_model).await?;
        read_models.record_progress(&namespace, 0, 0).await.context("Failed to write to the read store")?;
    }
    tracing::info!(message = "Initialised.", topics = ?topics(&log).iter().map(|t| t.name.clone()).collect::<Vec<_>>());
    if let Some(broker) = broker {
        broker.stop().await?;
    }
    Ok(())
}

#[derive(Clone)]
struct Readiness {
    commands: Option<Arc<CommandService<Ticket>>>,
    projector: Option<Arc<ProjectorHealth>>,
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
    if let Some(commands) = &readiness.commands {
        checks.insert("tickets_commands".into(), commands.pipeline().is_ready().into());
        if let Some(ownership) = commands.ownership() {
            checks.insert("tickets_owners".into(), ownership.is_complete().into());
            let directory: serde_json::Map<String, serde_json::Value> =
                ownership.directory().into_iter().map(|(p, url)| (p.to_string(), url.into())).collect();
            owners.insert("tickets".into(), directory.into());
        }
    }
    if let Some(projector) = &readiness.projector {
        checks.insert("tickets_projector".into(), projector.is_assigned().into());
        let lag: i64 = projector.lag().values().sum();
        checks.insert("tickets_projection_caught_up".into(), (lag <= readiness.max_lag).into());
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
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    projector: Option<JoinHandle<()>>,
    commands: Option<Arc<CommandService<Ticket>>>,
    broker: Option<LocalBroker>,
}

impl Application {
    /// Starts the given components and serves them on `settings.addr`.
    pub async fn build(settings: Settings, components: &[Component]) -> anyhow::Result<Self> {
        let has = |c: Component| components.contains(&c);
        let (log, broker) = connect_log(&settings).await?;
        ensure_topics(&log, &topics(&log)).await.context("Failed to create the topics")?;

        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("Failed to bind {}", settings.addr))?;
        let addr = listener.local_addr()?;
        let bundled_registry = settings.registry_url.is_none();
        let registry_url = settings.registry_url.clone().unwrap_or_else(|| format!("http://{addr}"));

        let mut router = Router::new();
        if bundled_registry && has(Component::SchemaRegistry) {
            let registry = SchemaRegistry::open(&log).await.context("Failed to open the schema registry")?;
            router = router.merge(schemas::registry::router(registry));
        }

        let codec = Arc::new(AvroCodec::<TicketEvent>::new(
            log.topic(TicketEvent::TOPIC),
            registry_settings(&registry_url)?,
        ));
        let needs_store = has(Component::ProjectorTickets) || has(Component::QueryApi);
        let store = if needs_store { Some(open_store(&settings.store).await?) } else { None };
        let keys = SessionKeys::new(settings.jwt_key.as_bytes(), settings.session_ttl_seconds, settings.secure_cookie);

        let commands = if has(Component::Tickets) {
            let pipeline = Arc::new(CommandPipeline::<Ticket>::start(&log, codec.clone())?);
            let url = settings.advertised_url.clone().unwrap_or_else(|| format!("http://{addr}"));
            let ownership = PartitionOwnership::join(&log, codec.topic(), url)
                .await
                .context("Failed to join the tickets command group")?;
            let commands = Arc::new(CommandService::new("tickets", pipeline, Some(Arc::new(ownership)), keys.clone()));
            router = router
                .merge(tickets_command::http::router(TicketCommandState { commands: commands.clone() , keys: keys.clone() }))
                .merge(commands.clone().internal_router());
            Some(commands)
        } else {
            None
        };

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut projector_health = None;
        let mut projector = None;
        if let (true, Some(store)) = (has(Component::ProjectorTickets), &store) {
            let health = Arc::new(ProjectorHealth::default());
            let projection = Arc::new(TicketProjector::new(codec.clone() as Arc<dyn EventCodec<TicketEvent>>));
            let task = run_projector(
                log.clone(),
                projection,
                ReadModels::new(store.clone()),
                log.group("projector.tickets"),
                health.clone(),
                shutdown_rx.clone(),
            );
            projector = Some(tokio::spawn(async move {
                if let Err(error) = task.await {
                    tracing::error!(message = "The tickets projector stopped.", %error);
                }
            }));
            projector_health = Some(health);
        }
        if let (true, Some(store)) = (has(Component::QueryApi), &store) {
            router = router.merge(query_api::router(query_api::QueryState { read_models: ReadModels::new(store.clone()) }));
        }

        let readiness = Readiness {
            commands: commands.clone(),
            projector: projector_health,
            store: store.clone(),
            registry_url: registry_url.clone(),
            http: reqwest::Client::new(),
            max_lag: settings.ready_max_lag,
        };
        let router = router
            .merge(
                Router::new()
                    .route("/healthz", get(healthz))
                    .route("/metrics", get(platform::metrics::metrics_handler))
                    .route("/readyz", get(readyz))
                    .with_state(readiness),
            )
            .fallback(not_found)
            .layer(axum::middleware::from_fn(platform::metrics::track_http))
            .layer(axum::middleware::from_fn(platform::telemetry::trace_http))
            .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES));

        let mut stop = shutdown_rx.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(message = "Listening.", %addr, ?components);

        if has(Component::Tickets) || has(Component::ProjectorTickets) {
            register_schemas(&codec).await?;
        }
        Ok(Self { addr, shutdown, server, projector, commands, broker })
    }

    /// The address the application listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the command side has caught up with the log.
    pub async fn wait_ready(&self) {
        if let Some(commands) = &self.commands {
            commands.pipeline().wait_ready().await;
        }
    }

    /// Runs until Ctrl-C or SIGTERM, then stops.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!(message = "Stopping.");
        self.stop().await
    }

    /// Stops every component, the local broker last.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        if let Some(projector) = self.projector {
            let _ = tokio::time::timeout(Duration::from_secs(10), projector).await;
        }
        drop(self.commands);
        if let Some(broker) = self.broker {
            broker.stop().await?;
        }
        Ok(())
    }
}

/// Registers every schema, waiting for a registry that is still starting.
async fn register_schemas(codec: &AvroCodec<TicketEvent>) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match codec.register_all().await {
            Ok(()) => return Ok(()),
            Err(platform::codec::CodecError::RegistryUnavailable(reason)) if tokio::time::Instant::now() < deadline => {
                tracing::info!(message = "Waiting for the schema registry.", %reason);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(error) => return Err(error).context("Failed to register the event schemas"),
        }
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
