//! Commands reach the owner of their aggregate's partition: run here when this instance owns
//! it, otherwise forwarded over HTTP to the owner's internal endpoint, on the internal
//! listener and with a peer token (`crate::peer`). The log arbiter keeps
//! the outcome correct even while ownership moves during a rebalance; forwarding is what keeps
//! conflicting commands from racing each other into the log in the first place.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::command::{COMMAND_DEADLINE, CommandError, CommandPipeline, CommandRequest, Outcome};
use crate::log::LogPosition;
use crate::ownership::{PartitionOwnership, Route};
use crate::peer::{PEER_TOKEN_HEADER, PeerKeys};

/// An aggregate whose commands, states and errors can cross the wire.
pub trait Forwardable: Aggregate + Serialize + DeserializeOwned
where
    Self::Command: Serialize + DeserializeOwned,
    Self::Error: Serialize + DeserializeOwned,
{
}

impl<A> Forwardable for A
where
    A: Aggregate + Serialize + DeserializeOwned,
    A::Command: Serialize + DeserializeOwned,
    A::Error: Serialize + DeserializeOwned,
{
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Answer<A, E> {
    Applied { state: A, version: i64, position: Option<LogPosition> },
    Rejected { error: E },
    Conflict { expected: i64, actual: i64 },
    Unavailable { reason: String },
    NotReady,
    Blocked { reason: String },
}

impl<A: Aggregate> From<Result<Outcome<A>, CommandError<A::Error>>> for Answer<A, A::Error> {
    fn from(result: Result<Outcome<A>, CommandError<A::Error>>) -> Self {
        match result {
            Ok(o) => Answer::Applied { state: o.state, version: o.version, position: o.position },
            Err(CommandError::Rejected(error)) => Answer::Rejected { error },
            Err(CommandError::Conflict { expected, actual }) => Answer::Conflict { expected, actual },
            Err(CommandError::Unavailable(reason)) => Answer::Unavailable { reason },
            Err(CommandError::NotReady) => Answer::NotReady,
            Err(CommandError::Blocked(reason)) => Answer::Blocked { reason },
        }
    }
}

impl<A: Aggregate> Answer<A, A::Error> {
    fn into_result(self) -> Result<Outcome<A>, CommandError<A::Error>> {
        match self {
            Answer::Applied { state, version, position } => Ok(Outcome { state, version, position }),
            Answer::Rejected { error } => Err(CommandError::Rejected(error)),
            Answer::Conflict { expected, actual } => Err(CommandError::Conflict { expected, actual }),
            Answer::Unavailable { reason } => Err(CommandError::Unavailable(reason)),
            Answer::NotReady => Err(CommandError::NotReady),
            Answer::Blocked { reason } => Err(CommandError::Blocked(reason)),
        }
    }
}

/// The command side of one aggregate type: the local pipeline plus routing to partition owners.
pub struct CommandService<A: Aggregate> {
    pipeline: Arc<CommandPipeline<A>>,
    ownership: Option<Arc<PartitionOwnership>>,
    keys: PeerKeys,
    http: reqwest::Client,
    name: String,
    path: String,
}

impl<A> CommandService<A>
where
    A: Forwardable,
    A::Command: Serialize + DeserializeOwned,
    A::Error: Serialize + DeserializeOwned,
{
    /// A service named `name` (its internal endpoint is `/internal/commands/<name>`). Without
    /// `ownership` every command runs locally.
    pub fn new(
        name: &str,
        pipeline: Arc<CommandPipeline<A>>,
        ownership: Option<Arc<PartitionOwnership>>,
        keys: PeerKeys,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(COMMAND_DEADLINE)
            .connect_timeout(Duration::from_secs(1))
            .build()
            .expect("a plain HTTP client builds");
        Self { pipeline, ownership, keys, http, name: name.to_string(), path: format!("/internal/commands/{name}") }
    }

    /// The local pipeline.
    pub fn pipeline(&self) -> &Arc<CommandPipeline<A>> {
        &self.pipeline
    }

    /// The ownership view, when partitions are owned through a group.
    pub fn ownership(&self) -> Option<&Arc<PartitionOwnership>> {
        self.ownership.as_ref()
    }

    /// Runs the command on the owner of its partition.
    pub async fn execute(&self, request: CommandRequest<A::Command>) -> Result<Outcome<A>, CommandError<A::Error>> {
        let result = self.route_and_execute(request).await;
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::Conflict { .. }) => "conflict",
            Err(CommandError::Unavailable(_) | CommandError::NotReady) => "unavailable",
            Err(CommandError::Blocked(_)) => "blocked",
        };
        crate::metrics::METRICS.command(&self.name, outcome);
        result
    }

    async fn route_and_execute(
        &self,
        request: CommandRequest<A::Command>,
    ) -> Result<Outcome<A>, CommandError<A::Error>> {
        let route = self.ownership.as_ref().map_or(Route::Local, |o| o.route(&request.aggregate_id));
        match route {
            Route::Local => self.pipeline.execute(request).await,
            Route::Remote(url) => match self.forward(&url, &request).await {
                Ok(answer) => answer.into_result(),
                // The owner may be running it still: running it here too would only race it.
                // The client retries with the command's idempotency key.
                Err(error) if error.is_timeout() => {
                    tracing::warn!(message = "The owner did not answer in time.", owner = %url, %error);
                    Err(CommandError::Unavailable("the partition's owner did not answer in time".into()))
                }
                Err(error) => {
                    // The owner is gone or unreachable: the arbiter makes running here safe.
                    tracing::warn!(message = "Forwarding failed; running the command here.", owner = %url, %error);
                    self.pipeline.execute(request).await
                }
            },
        }
    }

    async fn forward(
        &self,
        url: &str,
        request: &CommandRequest<A::Command>,
    ) -> Result<Answer<A, A::Error>, reqwest::Error> {
        let token = self.keys.mint(chrono::Utc::now().timestamp());
        let mut call = self
            .http
            .post(format!("{url}{}", self.path))
            .timeout(crate::deadline::remaining(COMMAND_DEADLINE))
            .header(PEER_TOKEN_HEADER, token);
        for (name, value) in crate::telemetry::current_trace_headers() {
            call = call.header(name, value);
        }
        call
            .json(request)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// The internal endpoint peers forward commands to, for the internal listener only. The
    /// peer token is checked before the body is read.
    pub fn internal_router(self: Arc<Self>) -> Router {
        let path = self.path.clone();
        let keys = self.keys.clone();
        Router::new()
            .route(&path, post(run_forwarded::<A>))
            .route_layer(axum::middleware::from_fn_with_state(keys, crate::peer::require_peer_token))
            .with_state(self)
    }
}

async fn run_forwarded<A>(
    State(service): State<Arc<CommandService<A>>>,
    Json(request): Json<CommandRequest<A::Command>>,
) -> Response
where
    A: Forwardable,
    A::Command: Serialize + DeserializeOwned,
    A::Error: Serialize + DeserializeOwned,
{
    // Forwarded commands always run here, so a stale directory can never bounce them around.
    let answer: Answer<A, A::Error> = service.pipeline.execute(request).await.into();
    (StatusCode::OK, Json(answer)).into_response()
}
