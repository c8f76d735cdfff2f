//! The Confluent Schema Registry REST API (the subset Kafka clients use), on axum.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use platform::log::LogError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{CompatibilityLevel, RegistryError, SchemaRegistry, ServiceError, VersionSpec};

/// The media type of every answer.
pub const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

/// The only schema type this registry manages.
const AVRO: &str = "AVRO";

/// The registry's REST API, served at the root.
pub fn router(registry: SchemaRegistry) -> Router {
    routes(registry).route("/", get(|| async { reply(StatusCode::OK, &json!({})) }))
}

/// The registry's REST API but its `GET /` (an empty object no client needs), for a port whose
/// `/` serves a page.
pub fn routes(registry: SchemaRegistry) -> Router {
    Router::new()
        .route("/schemas/types", get(|| async { reply(StatusCode::OK, &[AVRO]) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(get_version_schema))
        .route("/compatibility/subjects/{subject}/versions", post(check_against_all))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(check_against_one))
        .route("/config", get(get_global_level).put(put_global_level))
        .route("/config/{subject}", get(get_subject_level).put(put_subject_level))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 405, "HTTP 405 Method Not Allowed")
        })
        .with_state(registry)
}

// ---------------------------------------------------------------------------------------------
// Answers and errors

fn reply<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1))], bytes)
            .into_response(),
        Err(error) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, error.to_string())
            .into_response(),
    }
}

/// A failure in Confluent's shape: `{"error_code":N,"message":".."}` with its HTTP status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        reply(self.status, &json!({ "error_code": self.code, "message": self.message }))
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        let (status, code) = match &error {
            RegistryError::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            RegistryError::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
            RegistryError::SchemaNotFound => (StatusCode::NOT_FOUND, 40403),
            RegistryError::SubjectLevelNotConfigured(_) => (StatusCode::NOT_FOUND, 40408),
            RegistryError::Incompatible { .. } => (StatusCode::CONFLICT, 409),
            RegistryError::InvalidSchema(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            RegistryError::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            RegistryError::InvalidCompatibilityLevel(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, 42203)
            }
        };
        Self::new(status, code, error.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let log_error = match &error {
            ServiceError::Registry(refusal) => return refusal.clone().into(),
            ServiceError::Store(e) | ServiceError::Read(e) => e,
        };
        tracing::error!(message = "Schema registry request failed on the log.", error = %error);
        // Confluent: 50002 "operation timed out", 50001 "error in the backend data store".
        let code = if matches!(log_error, LogError::Unavailable(_)) { 50002 } else { 50001 };
        let message = match &error {
            ServiceError::Store(_) => format!("Error while storing the change: {log_error}"),
            _ => format!("Error while reading the schemas topic: {log_error}"),
        };
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }
}

// ---------------------------------------------------------------------------------------------
// Extractors that answer their rejections in the API's error shape

/// A JSON request body; `application/vnd.schemaregistry.v1+json`, `application/json` (any
/// `+json` type), `application/octet-stream` or no content type are accepted, like Confluent.
struct ApiJson<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = request.headers().get(CONTENT_TYPE) {
            let essence = content_type
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let accepted = essence == "application/json"
                || essence == "application/octet-stream"
                || (essence.starts_with("application/") && essence.ends_with("+json"));
            if !accepted {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    415,
                    "HTTP 415 Unsupported Media Type",
                ));
            }
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, 400, e.body_text()))?;
        serde_json::from_slice(&body).map(ApiJson).map_err(|error| {
            // Like Confluent's REST layer: unparseable JSON is a 400, well-formed JSON of the
            // wrong shape a 422.
            if error.is_data() {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    422,
                    format!("Unrecognized request body: {error}"),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, 400, format!("Malformed JSON: {error}"))
            }
        })
    }
}

/// Path parameters.
struct ApiPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, 400, e.body_text()))
    }
}

/// Query flags; unknown parameters (`deleted`, `normalize`, …) are ignored.
#[derive(Debug, Default)]
struct Flags {
    default_to_global: bool,
    verbose: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Flags {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, 400, e.body_text()))?;
        let flag = |name: &str| params.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Flags { default_to_global: flag("defaultToGlobal"), verbose: flag("verbose") })
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies

#[derive(serde::Deserialize)]
struct SchemaRequest {
    schema: Option<String>,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<serde_json::Value>>,
}

impl SchemaRequest {
    /// The Avro schema text, or 42201 for anything this registry does not manage.
    fn into_avro(self) -> Result<String, ApiError> {
        if let Some(schema_type) = &self.schema_type
            && !schema_type.eq_ignore_ascii_case(AVRO)
        {
            return Err(RegistryError::InvalidSchema(format!(
                "Unsupported schema type '{schema_type}'; this registry manages AVRO schemas only"
            ))
            .into());
        }
        if self.references.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(
                RegistryError::InvalidSchema("Schema references are not supported".into()).into()
            );
        }
        self.schema.ok_or_else(|| RegistryError::InvalidSchema("Empty schema".into()).into())
    }
}

#[derive(serde::Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
}

impl ConfigRequest {
    fn level(&self) -> Result<CompatibilityLevel, ApiError> {
        let name = self.compatibility.as_deref().unwrap_or_default();
        name.parse::<CompatibilityLevel>().map_err(|e| RegistryError::from(e).into())
    }
}

fn parse_id(id: &str) -> Result<u32, ApiError> {
    // An id that is not a number names no schema.
    id.parse::<u32>().map_err(|_| RegistryError::SchemaNotFound.into())
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn schema_by_id(
    State(registry): State<SchemaRegistry>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let schema = registry.read(|s| s.schema_by_id(id).map(str::to_string))?;
    Ok(reply(StatusCode::OK, &json!({ "schema": schema })))
}

async fn raw_schema_by_id(
    State(registry): State<SchemaRegistry>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let schema = registry.read(|s| s.schema_by_id(id).map(str::to_string))?;
    Ok(raw_schema(&schema))
}

async fn versions_of_id(
    State(registry): State<SchemaRegistry>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let versions = registry.read(|s| s.versions_of_id(id))?;
    let body: Vec<_> = versions
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    Ok(reply(StatusCode::OK, &body))
}

async fn subjects_of_id(
    State(registry): State<SchemaRegistry>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let mut subjects: Vec<String> =
        registry.read(|s| s.versions_of_id(id))?.into_iter().map(|(subject, _)| subject).collect();
    subjects.dedup();
    Ok(reply(StatusCode::OK, &subjects))
}

async fn list_subjects(State(registry): State<SchemaRegistry>) -> Response {
    reply(StatusCode::OK, &registry.read(|s| s.subjects()))
}

async fn lookup(
    State(registry): State<SchemaRegistry>,
    ApiPath(subject): ApiPath<String>,
    ApiJson(request): ApiJson<SchemaRequest>,
) -> Result<Response, ApiError> {
    // An unknown subject answers 40401 before the body is looked at, like Confluent.
    registry.read(|s| s.versions(&subject))?;
    let schema = request.into_avro()?;
    let version = registry.read(|s| s.lookup(&subject, &schema))?;
    Ok(reply(StatusCode::OK, &version))
}

async fn list_versions(
    State(registry): State<SchemaRegistry>,
    ApiPath(subject): ApiPath<String>,
) -> Result<Response, ApiError> {
    let versions = registry.read(|s| s.versions(&subject))?;
    Ok(reply(StatusCode::OK, &versions))
}

async fn register(
    State(registry): State<SchemaRegistry>,
    ApiPath(subject): ApiPath<String>,
    ApiJson(request): ApiJson<SchemaRequest>,
) -> Result<Response, ApiError> {
    let schema = request.into_avro()?;
    let id = registry.register(&subject, &schema).await?;
    Ok(reply(StatusCode::OK, &json!({ "id": id })))
}

async fn get_version(
    State(registry): State<SchemaRegistry>,
    ApiPath((subject, version)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let version = registry.read(|s| s.version(&subject, spec))?;
    Ok(reply(StatusCode::OK, &version))
}

async fn get_version_schema(
    State(registry): State<SchemaRegistry>,
    ApiPath((subject, version)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let version = registry.read(|s| s.version(&subject, spec))?;
    Ok(raw_schema(&version.schema))
}

/// The bare schema text as the body, as `/schema` endpoints answer.
fn raw_schema(schema: &str) -> Response {
    ([(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1))], schema.to_string())
        .into_response()
}

async fn check_against_all(
    State(registry): State<SchemaRegistry>,
    ApiPath(subject): ApiPath<String>,
    flags: Flags,
    ApiJson(request): ApiJson<SchemaRequest>,
) -> Result<Response, ApiError> {
    let schema = request.into_avro()?;
    let outcome = registry.read(|s| s.check_compatibility(&subject, &schema, None))?;
    Ok(compatibility_answer(outcome, flags.verbose))
}

async fn check_against_one(
    State(registry): State<SchemaRegistry>,
    ApiPath((subject, version)): ApiPath<(String, String)>,
    flags: Flags,
    ApiJson(request): ApiJson<SchemaRequest>,
) -> Result<Response, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let schema = request.into_avro()?;
    let outcome = registry.read(|s| s.check_compatibility(&subject, &schema, Some(spec)))?;
    Ok(compatibility_answer(outcome, flags.verbose))
}

fn compatibility_answer(outcome: Result<(), Vec<String>>, verbose: bool) -> Response {
    let messages = outcome.as_ref().err().cloned().unwrap_or_default();
    if verbose {
        reply(StatusCode::OK, &json!({ "is_compatible": outcome.is_ok(), "messages": messages }))
    } else {
        reply(StatusCode::OK, &json!({ "is_compatible": outcome.is_ok() }))
    }
}

async fn get_global_level(State(registry): State<SchemaRegistry>) -> Result<Response, ApiError> {
    let level = registry.read(|s| s.compatibility_level(None, true))?;
    Ok(reply(StatusCode::OK, &json!({ "compatibilityLevel": level })))
}

async fn put_global_level(
    State(registry): State<SchemaRegistry>,
    ApiJson(request): ApiJson<ConfigRequest>,
) -> Result<Response, ApiError> {
    let level = request.level()?;
    registry.set_compatibility_level(None, level).await?;
    Ok(reply(StatusCode::OK, &json!({ "compatibility": level })))
}

async fn get_subject_level(
    State(registry): State<SchemaRegistry>,
    ApiPath(subject): ApiPath<String>,
    flags: Flags,
) -> Result<Response, ApiError> {
    let level =
        registry.read(|s| s.compatibility_level(Some(&subject), flags.default_to_global))?;
    Ok(reply(StatusCode::OK, &json!({ "compatibilityLevel": level })))
}

async fn put_subject_level(
    State(registry): State<SchemaRegistry>,
    ApiPath(subject): ApiPath<String>,
    ApiJson(request): ApiJson<ConfigRequest>,
) -> Result<Response, ApiError> {
    let level = request.level()?;
    registry.set_compatibility_level(Some(&subject), level).await?;
    Ok(reply(StatusCode::OK, &json!({ "compatibility": level })))
}
