//! The one place where failures become HTTP answers, in the reference app's error shape
//! `{"errors":[{"message":…,"field":…}]}`.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The reference app's body limit.
pub const BODY_LIMIT_BYTES: usize = 100 * 1024;

/// One entry of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEntry {
    /// Human-readable message.
    pub message: String,
    /// The request field at fault, for input errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorEntry {
    /// An input error on a field.
    pub fn field(field: &str, message: &str) -> Self {
        Self { message: message.to_string(), field: Some(field.to_string()) }
    }
}

/// Every failure an HTTP route can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Input errors, one per bad field (400).
    #[error("Invalid request")]
    Validation(Vec<ErrorEntry>),
    /// A request the rules refuse (400).
    #[error("{0}")]
    BadRequest(String),
    /// Not signed in, or not the owner (401).
    #[error("Not authorized")]
    NotAuthorized,
    /// Unknown resource or route (404).
    #[error("Not Found")]
    NotFound,
    /// A named thing that does not exist, saying which (404).
    #[error("{0}")]
    Missing(String),
    /// Stale expected version (409).
    #[error("{0}")]
    Conflict(String),
    /// Body over the limit (413).
    #[error("Request body is too large")]
    PayloadTooLarge,
    /// Too many attempts from this client or on this account (429, with `Retry-After`).
    #[error("Too many attempts; try again later")]
    TooManyRequests {
        /// Whole seconds until an attempt is allowed again.
        retry_after_seconds: u64,
    },
    /// Infrastructure down or catching up (503).
    #[error("Service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure (500); the cause is logged, not shown.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Serialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotAuthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound | ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after_seconds } => Some(retry_after_seconds.max(&1).to_string()),
            ApiError::Unavailable(_) => Some(RETRY_AFTER_SECONDS.to_string()),
            _ => None,
        };
        let errors = match self {
            ApiError::Validation(entries) => entries,
            ApiError::Unexpected(ref error) => {
                tracing::error!(message = "Unexpected failure.", error = ?error);
                vec![ErrorEntry { message: "Something went wrong".into(), field: None }]
            }
            ApiError::Unavailable(ref reason) => {
                tracing::warn!(message = "Answering 503.", %reason);
                vec![ErrorEntry { message: "Service unavailable".into(), field: None }]
            }
            other => vec![ErrorEntry { message: other.to_string(), field: None }],
        };
        let mut response = (status, axum::Json(ErrorBody { errors })).into_response();
        if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Seconds a client should wait before retrying a 503 (`Retry-After`).
pub const RETRY_AFTER_SECONDS: &str = "1";

/// Gives every command request (`POST`, `PUT`, `DELETE` under `/api/`) an `Idempotency-Key`:
/// the client's, or one made up here, and names it in the answer's own `Idempotency-Key`
/// header. A 503 may come after the write landed (the deadline fired while the echo was on its
/// way); retrying with that key returns the first outcome instead of acting twice.
pub async fn assign_idempotency_key(mut request: Request, next: axum::middleware::Next) -> Response {
    let is_command = matches!(*request.method(), axum::http::Method::POST | axum::http::Method::PUT | axum::http::Method::DELETE)
        && request.uri().path().starts_with("/api/");
    if !is_command {
        return next.run(request).await;
    }
    let key = match request.headers().get(IDEMPOTENCY_HEADER) {
        Some(key) => key.clone(),
        None => {
            let made = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a header value");
            request.headers_mut().insert(IDEMPOTENCY_HEADER, made.clone());
            made
        }
    };
    let mut response = next.run(request).await;
    response.headers_mut().insert(IDEMPOTENCY_HEADER, key);
    response
}

/// Routes `/api/tickets/` like `/api/tickets`, as Express does by default (later versions of
/// the reference client add the slash). Runs before routing, so it wraps the whole router.
pub fn trim_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rewritten = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = rewritten.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Marks every `413 Payload Too Large` answer `Connection: close`, whichever extractor
/// rejected the body (ours, axum's `Json` on the forwarding endpoint). The body limit answers
/// before the rest of the body is read, so the connection cannot carry another request; without
/// the header a keep-alive client sends its next request into the closing socket.
pub async fn close_after_payload_too_large(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A JSON body parsed into `serde_json::Value`, so that routes validate fields themselves and
/// every body failure (too large, not UTF-8, not JSON) answers in the error shape.
#[derive(Debug, Clone)]
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("Could not read the request body".into())
            }
        })?;
        parse_json_body(&bytes).map(JsonBody)
    }
}

/// A command body as the routes read it: empty is `{}`, anything else must be JSON.
pub fn parse_json_body(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if bytes.is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_slice(bytes).map_err(|_| ApiError::BadRequest("Request body is not valid JSON".into()))
}

/// The answer to unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// A position in a topic handed to clients in `X-Consistency-Token`: `<partition>:<offset>`
/// prefixed by the read model's topic short name, e.g. `tickets:3:1042`. A command that wrote
/// to several topics (an order reserves its ticket) answers one per write, comma-separated
/// (`orders:1:77,tickets:3:1042`), and a read waits for those of its read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyToken {
    /// Short name of the topic (`tickets`).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset of the write.
    pub offset: i64,
}

/// Name of the consistency header.
pub const CONSISTENCY_HEADER: &str = "x-consistency-token";

impl ConsistencyToken {
    /// Parses one token; `None` when malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().splitn(3, ':');
        let topic = parts.next()?.to_string();
        let partition = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        (!topic.is_empty()).then_some(Self { topic, partition, offset })
    }

    /// The well-formed tokens of a request's header that name writes to `topic`.
    pub fn for_topic(headers: &axum::http::HeaderMap, topic: &str) -> Vec<Self> {
        headers
            .get_all(CONSISTENCY_HEADER)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(Self::parse)
            .filter(|token| token.topic == topic)
            .collect()
    }

    /// Adds the token of a command's write (at `position` of topic `topic`) to its answer;
    /// a command that wrote nothing there adds none.
    pub fn attach(response: &mut axum::response::Response, topic: &str, position: Option<crate::log::LogPosition>) {
        let Some(position) = position else { return };
        let token = ConsistencyToken { topic: topic.to_string(), partition: position.partition, offset: position.offset };
        let value = match response.headers().get(CONSISTENCY_HEADER).and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier},{token}"),
            None => token.to_string(),
        };
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(CONSISTENCY_HEADER, value);
        }
    }
}

impl std::fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.topic, self.partition, self.offset)
    }
}

/// Name of the idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The client's `Idempotency-Key`, if any (at most 200 visible ASCII characters).
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else { return Ok(None) };
    match value.to_str() {
        Ok(key) if !key.trim().is_empty() && key.len() <= 200 => Ok(Some(key.trim().to_string())),
        _ => Err(ApiError::Validation(vec![ErrorEntry::field(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 200 visible characters",
        )])),
    }
}

/// The expected version in `If-Match` (`3`, `"3"` or `W/"3"`), if any.
pub fn expected_version(headers: &axum::http::HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .map(Some)
        .ok_or_else(|| {
            ApiError::Validation(vec![ErrorEntry::field("If-Match", "If-Match must be a version number")])
        })
}

/// Maps a command failure to its answer; the domain error is mapped by the caller.
pub fn command_error<E: std::error::Error + 'static>(
    error: crate::command::CommandError<E>,
    domain: impl FnOnce(E) -> ApiError,
) -> ApiError {
    use crate::command::CommandError;
    match error {
        CommandError::Rejected(e) => domain(e),
        CommandError::Conflict { .. } => ApiError::Conflict(error.to_string()),
        CommandError::Unavailable(reason) => ApiError::Unavailable(reason),
        CommandError::NotReady => ApiError::Unavailable("catching up with the log".into()),
        CommandError::Blocked(reason) => ApiError::Conflict(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_over_the_limit_closes_the_connection() {
        let response = close_after_payload_too_large(ApiError::PayloadTooLarge.into_response()).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let response = close_after_payload_too_large(ApiError::NotFound.into_response()).await;
        assert!(response.headers().get(header::CONNECTION).is_none(), "other errors keep the connection");
    }
}
