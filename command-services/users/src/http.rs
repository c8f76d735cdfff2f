//! The users routes: signup, signin, signout, currentuser.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use platform::command::CommandRequest;
use platform::forwarding::CommandService;
use platform::http::{ApiError, ConsistencyToken, ErrorEntry, JsonBody, command_error, idempotency_key};
use platform::session::{CurrentUser, SessionKeys};
use platform::throttle::{ClientAddress, TrustedProxies};
use serde_json::json;
use uuid::Uuid;

use crate::domain::{Email, NewPassword, PersonalData, User, UserCommand, UserError};
use crate::personal::{ForgetError, Opened, PersonalDataVault};
use crate::throttle::SignInThrottle;

/// A hash to verify against when the email is unknown, so that both failures take as long.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2m2x6kz0b0Jt4dP7rJgq2bq0f1p9dYk8m7qk0oQ3f8E";

/// What the users routes need.
#[derive(Clone)]
pub struct UserRoutesState {
    /// The command side of the User aggregate.
    pub commands: Arc<CommandService<User>>,
    /// Session signing.
    pub keys: SessionKeys,
    /// Limits on sign-in and sign-up attempts.
    pub throttle: Arc<SignInThrottle>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub proxies: TrustedProxies,
    /// Data keys and the email index.
    pub vault: Arc<PersonalDataVault>,
    /// Bearer token of the admin routes (`None`: they are off and answer 404).
    pub admin_token: Option<Arc<str>>,
}

impl FromRef<UserRoutesState> for TrustedProxies {
    fn from_ref(state: &UserRoutesState) -> Self {
        state.proxies.clone()
    }
}

impl FromRef<UserRoutesState> for SessionKeys {
    fn from_ref(state: &UserRoutesState) -> Self {
        state.keys.clone()
    }
}

/// The routes, with their state.
pub fn router(state: UserRoutesState) -> Router {
    Router::new()
        .route("/api/users/signup", post(sign_up))
        .route("/api/users/signin", post(sign_in))
        .route("/api/users/signout", post(sign_out))
        .route("/api/users/currentuser", get(current_user))
        .route("/api/admin/users/{id}", delete(forget_user))
        .with_state(state)
}

fn signed_in(keys: &SessionKeys, status: StatusCode, user_id: &str, email: &Email) -> Response {
    let token = keys.mint(user_id, email.as_str(), chrono::Utc::now().timestamp());
    let mut response = (status, Json(json!({ "id": user_id, "email": email.as_str() }))).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&keys.session_cookie(&token)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A password-hashing job for [`HASHERS`].
type HashJob = Box<dyn FnOnce() + Send>;

/// A few long-lived threads, one per core, that hash and verify passwords.
///
/// Each Argon2id hash takes 19 MiB and tens of milliseconds of a core. On tokio's blocking
/// threads, which come and go, a burst of sign-ups ran dozens of hashes at once (finishing none
/// sooner) and glibc kept their blocks cached in up to 16 arenas: the users service sat at
/// 0.8–1.3 GiB resident (see BENCHMARKS.md). These threads queue the work and reuse their memory.
/// The queue is bounded: a burst beyond it is shed with a 503 at once rather than queued for
/// longer than any client waits.
static HASHERS: std::sync::LazyLock<std::sync::Mutex<std::sync::mpsc::SyncSender<HashJob>>> = std::sync::LazyLock::new(|| {
    let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let (jobs, queue) = std::sync::mpsc::sync_channel::<HashJob>(threads * HASH_QUEUE_PER_THREAD);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
    for n in 0..threads {
        let queue = queue.clone();
        let spawned = std::thread::Builder::new().name(format!("password-hasher-{n}")).spawn(move || {
            loop {
                let job = match queue.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_) => return,
                };
                match job {
                    // A panicking job drops its answer channel (the request fails); the thread lives on.
                    Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                    Err(_) => return,
                }
            }
        });
        if let Err(error) = spawned {
            tracing::error!(message = "Failed to start a password hashing thread.", %error);
        }
    }
    std::sync::Mutex::new(jobs)
});

/// Jobs that may wait per hashing thread (each takes tens of milliseconds).
const HASH_QUEUE_PER_THREAD: usize = 8;

/// Runs password hashing or verification on [`HASHERS`]; a 503 when their queue is full.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        // The request gave up (its deadline passed): spare the core.
        if !answer.is_closed() {
            let _ = answer.send(work());
        }
    });
    let sent = HASHERS
        .lock()
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("the password hashers are gone")))?
        .try_send(job);
    match sent {
        Ok(()) => {}
        Err(std::sync::mpsc::TrySendError::Full(_)) => {
            return Err(ApiError::Unavailable("too many password checks are waiting".into()));
        }
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
            return Err(ApiError::Unexpected(anyhow::anyhow!("the password hashers are gone")));
        }
    }
    answered.await.map_err(|_| ApiError::Unexpected(anyhow::anyhow!("password hashing failed")))
}

/// The email and password of a sign-up body, every bad field named.
pub fn parse_sign_up(body: &serde_json::Value) -> Result<(Email, NewPassword), ApiError> {
    match (Email::parse(body.get("email")), NewPassword::parse(body.get("password"))) {
        (Ok(e), Ok(p)) => Ok((e, p)),
        (e, p) => Err(ApiError::Validation([e.err(), p.err()].into_iter().flatten().collect())),
    }
}

/// The email and password of a sign-in body, every bad field named.
pub fn parse_sign_in(body: &serde_json::Value) -> Result<(Email, String), ApiError> {
    let password = match body.get("password").and_then(serde_json::Value::as_str) {
        Some(p) if !p.trim().is_empty() => Ok(p.trim().to_string()),
        _ => Err(ErrorEntry::field("password", "You must supply a password")),
    };
    match (Email::parse(body.get("email")), password) {
        (Ok(e), Ok(p)) => Ok((e, p)),
        (e, p) => Err(ApiError::Validation([e.err(), p.err()].into_iter().flatten().collect())),
    }
}

/// A user signed up before sealing and not migrated yet: keyed by the email itself.
fn legacy_state(state: &UserRoutesState, email: &Email) -> User {
    state.commands.pipeline().state(email.as_str()).0
}

/// The user of an email: under its index key, or (until `ticketing users migrate` has run)
/// under the email itself.
fn current_state(state: &UserRoutesState, email: &Email) -> User {
    let (user, version) = state.commands.pipeline().state(&state.vault.aggregate_id(email));
    if version > 0 { user } else { legacy_state(state, email) }
}

#[tracing::instrument(name = "POST /api/users/signup", skip_all)]
async fn sign_up(
    State(state): State<UserRoutesState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    state.throttle.admit(address)?;
    let (email, password) = parse_sign_up(&body)?;
    let attempt = state.throttle.begin(email.as_str(), address)?;
    let result = register(&state, &headers, &email, password).await;
    match &result {
        Ok(_) => state.throttle.signed_up(attempt),
        // Our failure, not the client's: the attempt does not count.
        Err(ApiError::Unavailable(_) | ApiError::Unexpected(_)) => state.throttle.void(attempt),
        Err(_) => drop(attempt),
    }
    let (user_id, position) = result?;
    let mut response = signed_in(&state.keys, StatusCode::CREATED, &user_id, &email);
    ConsistencyToken::attach(&mut response, "users", position);
    Ok(response)
}

/// Signs `email` up; the new user's id, and where its sign-up was written (none for the repeat
/// of an earlier sign-up).
async fn register(
    state: &UserRoutesState,
    headers: &HeaderMap,
    email: &Email,
    password: NewPassword,
) -> Result<(String, Option<platform::log::LogPosition>), ApiError> {
    let password_hash = blocking(move || {
        Argon2::default()
            .hash_password(password.as_str().as_bytes(), &SaltString::generate(&mut OsRng))
            .map(|h| h.to_string())
    })
    .await?
    .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("Failed to hash a password: {e}")))?;
    if legacy_state(state, email).exists {
        return Err(ApiError::BadRequest(UserError::EmailInUse.to_string()));
    }
    let aggregate_id = state.vault.aggregate_id(email);
    let command_id = idempotency_key(headers)?
        .map_or_else(|| Uuid::new_v4().to_string(), |key| format!("signup:{aggregate_id}:{key}"));
    let user_id = Uuid::new_v4().to_string();
    let personal = PersonalData { email: email.as_str().to_string(), password_hash };
    let sealed = state
        .vault
        .seal_new(&user_id, &personal)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the key topic failed: {e}")))?;
    let request = CommandRequest::from_client(&aggregate_id, command_id, UserCommand::SignUp { user_id: user_id.clone(), personal: sealed });
    let outcome = state.commands.execute(request).await;
    // A refused sign-up, or the repeat of an earlier one (which keeps its own user), leaves the
    // key made for it unused: it goes, so keys never pile up for users that do not exist.
    if outcome.as_ref().map_or(true, |o| o.state.user_id != user_id) {
        state.vault.discard(&user_id).await;
    }
    let outcome = outcome.map_err(|e| {
        command_error(e, |error| match error {
            UserError::EmailInUse => ApiError::BadRequest(error.to_string()),
            UserError::UnknownUser => ApiError::NotFound,
        })
    })?;
    Ok((outcome.state.user_id, outcome.position))
}

#[tracing::instrument(name = "POST /api/users/signin", skip_all)]
async fn sign_in(
    State(state): State<UserRoutesState>,
    ClientAddress(address): ClientAddress,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    state.throttle.admit(address)?;
    let (email, password) = parse_sign_in(&body)?;
    let attempt = state.throttle.begin(email.as_str(), address)?;
    let checked = check_password(&state, &email, password).await;
    let user_id = match checked {
        Ok(Some(user_id)) => user_id,
        Ok(None) => return Err(ApiError::BadRequest("Invalid credentials".into())),
        Err(error) => {
            // Our failure (the hashers are busy): the attempt does not count.
            state.throttle.void(attempt);
            return Err(error);
        }
    };
    state.throttle.signed_in(attempt);
    Ok(signed_in(&state.keys, StatusCode::OK, &user_id, &email))
}

/// The user id of `email` when `password` is its password.
async fn check_password(state: &UserRoutesState, email: &Email, password: String) -> Result<Option<String>, ApiError> {
    let user = current_state(state, email);
    // An unknown or erased user is checked against a dummy hash: both failures take as long.
    let known = match state.vault.open(&user).await {
        Opened::Data(personal) if personal.email == email.as_str() => Some(personal.password_hash),
        _ => None,
    };
    let hash = known.clone().unwrap_or_else(|| DUMMY_HASH.to_string());
    let matches = blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await?;
    Ok((known.is_some() && matches).then_some(user.user_id))
}

/// Whether the request carries the admin bearer token (compared as digests, so the time taken
/// says nothing about how much of it matched).
fn is_admin(headers: &HeaderMap, admin_token: &str) -> bool {
    use sha2::{Digest, Sha256};
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| Sha256::digest(given.trim().as_bytes()) == Sha256::digest(admin_token.as_bytes()))
}

/// `DELETE /api/admin/users/{id}`: forgets the user (see `ticketing users forget`).
#[tracing::instrument(name = "DELETE /api/admin/users/{id}", skip_all)]
async fn forget_user(State(state): State<UserRoutesState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let Some(admin_token) = state.admin_token.as_deref() else {
        return Err(ApiError::NotFound);
    };
    if !is_admin(&headers, admin_token) {
        return Err(ApiError::NotAuthorized);
    }
    match state.vault.forget(&state.commands, &id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(ForgetError::UnknownUser(_)) => Err(ApiError::NotFound),
        Err(error @ ForgetError::NotMigrated(_)) => Err(ApiError::Conflict(error.to_string())),
        Err(error) => Err(ApiError::Unavailable(error.to_string())),
    }
}

async fn sign_out(State(state): State<UserRoutesState>) -> Response {
    let mut response = Json(json!({})).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&state.keys.cleared_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn current_user(CurrentUser(user): CurrentUser) -> Json<serde_json::Value> {
    Json(json!({
        "currentUser": user.map(|u| json!({ "id": u.id, "email": u.email, "iat": u.iat })),
    }))
}
