//! HTTP command endpoints of tickets: `POST /api/tickets` and `PUT /api/tickets/{id}`.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use platform::command::{CommandRequest, Outcome};
use platform::forwarding::CommandService;
use platform::http::{
    ApiError, ConsistencyToken, ErrorEntry, JsonBody, command_error, expected_version,
    idempotency_key,
};
use platform::session::{CurrentUser, SessionKeys};
use serde_json::json;
use uuid::Uuid;

use crate::domain::{Price, Ticket, TicketCommand, TicketError, Title};

/// Ids of tickets created with an `Idempotency-Key` derive from it, so a repeat targets the
/// same aggregate and is answered from its memory.
const TICKET_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a8e_5b7d_4c3a_9e21_0d4b_8a6f_1c35);

/// What the ticket command routes need.
#[derive(Clone)]
pub struct TicketCommandState {
    /// The command side of the Ticket aggregate.
    pub commands: Arc<CommandService<Ticket>>,
    /// Session verification.
    pub keys: SessionKeys,
}

impl FromRef<TicketCommandState> for SessionKeys {
    fn from_ref(state: &TicketCommandState) -> Self {
        state.keys.clone()
    }
}

/// The routes, with their state.
pub fn router(state: TicketCommandState) -> Router {
    Router::new()
        .route("/api/tickets", post(create_ticket))
        .route("/api/tickets/{id}", put(update_ticket))
        .with_state(state)
}

/// The title and price of a ticket's JSON body (create or update), every bad field named.
pub fn parse_ticket_body(body: &serde_json::Value) -> Result<(Title, Price), ApiError> {
    let title = Title::parse(body.get("title"));
    let price = Price::parse(body.get("price"), body.get("currency"));
    match (title, price) {
        (Ok(title), Ok(price)) => Ok((title, price)),
        (title, price) => {
            let errors: Vec<ErrorEntry> = [title.err(), price.err()].into_iter().flatten().collect();
            Err(ApiError::Validation(errors))
        }
    }
}

/// The answer to a refused ticket command.
pub fn domain_error(error: TicketError) -> ApiError {
    match error {
        TicketError::NotFound => ApiError::NotFound,
        TicketError::NotOwner => ApiError::NotAuthorized,
        TicketError::AlreadyExists
        | TicketError::Reserved
        | TicketError::AlreadyReserved
        | TicketError::NotReservedByOrder => ApiError::BadRequest(error.to_string()),
    }
}

/// The ticket as the reference app shows it (its `version` starts at 0).
pub fn ticket_json(id: &str, ticket: &Ticket, version: i64) -> serde_json::Value {
    let mut body = json!({
        "id": id,
        "title": ticket.title,
        "price": ticket.currency.to_major(ticket.price_minor),
        "currency": ticket.currency.code(),
        "userId": ticket.user_id,
        "version": version - 1,
    });
    if let Some(order_id) = ticket.order_id() {
        body["orderId"] = order_id.into();
    }
    body
}

fn answer(status: StatusCode, id: &str, outcome: &Outcome<Ticket>) -> Response {
    let mut response = (status, Json(ticket_json(id, &outcome.state, outcome.version))).into_response();
    ConsistencyToken::attach(&mut response, "tickets", outcome.position);
    response
}

#[tracing::instrument(name = "POST /api/tickets", skip_all)]
async fn create_ticket(
    State(state): State<TicketCommandState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let user = user.ok_or(ApiError::NotAuthorized)?;
    let (title, price) = parse_ticket_body(&body)?;
    let key = idempotency_key(&headers)?;
    let (id, command_id) = match &key {
        Some(key) => {
            let scoped = format!("{}:{key}", user.id);
            (Uuid::new_v5(&TICKET_ID_NAMESPACE, scoped.as_bytes()).to_string(), scoped)
        }
        None => (Uuid::new_v4().to_string(), Uuid::new_v4().to_string()),
    };
    let command = TicketCommand::CreateTicket { title, price, user_id: user.id };
    let outcome = state
        .commands
        .execute(CommandRequest::from_client(&id, command_id, command))
        .await
        .map_err(|e| command_error(e, domain_error))?;
    Ok(answer(StatusCode::CREATED, &id, &outcome))
}

#[tracing::instrument(name = "PUT /api/tickets/{id}", skip_all, fields(ticket_id = %id))]
async fn update_ticket(
    State(state): State<TicketCommandState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let user = user.ok_or(ApiError::NotAuthorized)?;
    let (title, price) = parse_ticket_body(&body)?;
    // The client sees versions starting at 0, the log starts at 1.
    let expected = expected_version(&headers)?.map(|v| v + 1);
    let command_id = match idempotency_key(&headers)? {
        Some(key) => format!("{}:{key}", user.id),
        None => Uuid::new_v4().to_string(),
    };
    let command = TicketCommand::UpdateTicket { title, price, user_id: user.id };
    let outcome = state
        .commands
        .execute(CommandRequest::from_client(&id, command_id, command).expecting(expected))
        .await
        .map_err(|e| command_error(e, domain_error))?;
    Ok(answer(StatusCode::OK, &id, &outcome))
}
