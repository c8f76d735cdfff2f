//! HTTP command endpoints of orders: `POST /api/orders` and `DELETE /api/orders/{id}`.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use chrono::{SecondsFormat, TimeZone, Utc};
use platform::command::{CommandRequest, Outcome};
use platform::forwarding::CommandService;
use platform::http::{
    ApiError, ConsistencyToken, ErrorEntry, JsonBody, command_error, idempotency_key,
};
use platform::session::{CurrentUser, SessionKeys};
use serde_json::json;
use tickets_command::domain::{Ticket, TicketCommand, TicketError};
use uuid::Uuid;

use crate::domain::{Order, OrderCommand, OrderError, TicketSnapshot};
use crate::saga::{release_command_id, reserve_command_id};

/// Ids of orders placed with an `Idempotency-Key` derive from it and the user.
const ORDER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x2b9e_77c1_0f4a_4e8d_b6a3_5c1d_9e07_a4f2);

/// What the order command routes need.
#[derive(Clone)]
pub struct OrderRoutesState {
    /// The command side of orders.
    pub orders: Arc<CommandService<Order>>,
    /// The command side of tickets, which owns reservations.
    pub tickets: Arc<CommandService<Ticket>>,
    /// Session verification.
    pub keys: SessionKeys,
    /// How long an order holds its ticket (`EXPIRATION_WINDOW_SECONDS`).
    pub expiration_window_seconds: i64,
}

impl FromRef<OrderRoutesState> for SessionKeys {
    fn from_ref(state: &OrderRoutesState) -> Self {
        state.keys.clone()
    }
}

/// The routes, with their state.
pub fn router(state: OrderRoutesState) -> Router {
    Router::new()
        .route("/api/orders", post(create_order))
        .route("/api/orders/{id}", delete(cancel_order))
        .with_state(state)
}

/// `expiresAt` as the reference app shows it (JavaScript's `toISOString`).
pub fn iso_millis(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().map_or_else(String::new, |t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The order as the reference app shows it (its `version` starts at 0).
pub fn order_json(id: &str, order: &Order, version: i64) -> serde_json::Value {
    json!({
        "id": id,
        "userId": order.user_id,
        "status": order.status.as_api_str(),
        "expiresAt": iso_millis(order.expires_at),
        "ticket": {
            "id": order.ticket.id,
            "title": order.ticket.title,
            "price": order.ticket.currency.to_major(order.ticket.price_minor),
            "currency": order.ticket.currency.code(),
        },
        "version": version - 1,
    })
}

fn with_token(mut response: Response, outcome: &Outcome<Order>) -> Response {
    ConsistencyToken::attach(&mut response, "orders", outcome.position);
    response
}

/// The ticket id of a `POST /api/orders` body, as the API accepts it.
pub fn parse_ticket_id(body: &serde_json::Value) -> Result<String, ApiError> {
    match body.get("ticketId").and_then(serde_json::Value::as_str).map(str::trim) {
        Some(id)
            if !id.is_empty()
                && id.len() <= 100
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(id.to_string())
        }
        _ => Err(ApiError::Validation(vec![ErrorEntry::field("ticketId", "TicketId must be provided")])),
    }
}

fn order_error(error: OrderError) -> ApiError {
    match error {
        OrderError::NotFound => ApiError::NotFound,
        OrderError::NotOwner => ApiError::NotAuthorized,
        other => ApiError::BadRequest(other.to_string()),
    }
}

#[tracing::instrument(name = "POST /api/orders", skip_all)]
async fn create_order(
    State(state): State<OrderRoutesState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let user = user.ok_or(ApiError::NotAuthorized)?;
    let ticket_id = parse_ticket_id(&body)?;
    let order_id = match idempotency_key(&headers)? {
        Some(key) => Uuid::new_v5(&ORDER_ID_NAMESPACE, format!("{}:{key}", user.id).as_bytes()).to_string(),
        None => Uuid::new_v4().to_string(),
    };
    // The ticket's owner decides the reservation and its deadline, on its clock.
    let reserve = TicketCommand::ReserveTicket { order_id: order_id.clone(), hold_ms: state.expiration_window_seconds * 1000 };
    let reserved = state
        .tickets
        .execute(CommandRequest::from_client(&ticket_id, reserve_command_id(&order_id), reserve))
        .await
        .map_err(|e| {
            command_error(e, |error| match error {
                TicketError::NotFound => ApiError::NotFound,
                other => ApiError::BadRequest(other.to_string()),
            })
        })?;
    let ticket = &reserved.state;
    // An order exists only with its own hold, and ends when the hold does.
    let held_until = ticket
        .reservation
        .as_ref()
        .filter(|r| r.order_id == order_id)
        .map(|r| r.expires_at)
        .ok_or_else(|| ApiError::BadRequest(TicketError::AlreadyReserved.to_string()))?;

    let create = OrderCommand::CreateOrder {
        user_id: user.id,
        ticket: TicketSnapshot {
            id: ticket_id,
            title: ticket.title.clone(),
            price_minor: ticket.price_minor,
            currency: ticket.currency,
        },
        expires_at: held_until,
    };
    let created = state
        .orders
        .execute(CommandRequest::from_client(&order_id, format!("create:{order_id}"), create))
        .await
        .map_err(|e| command_error(e, order_error))?;
    let body = order_json(&order_id, &created.state, created.version);
    let mut response = with_token((StatusCode::CREATED, Json(body)).into_response(), &created);
    // The token covers the reservation too: `GET /api/tickets/:id` with it shows the hold.
    ConsistencyToken::attach(&mut response, "tickets", reserved.position);
    Ok(response)
}

#[tracing::instrument(name = "DELETE /api/orders/{id}", skip_all, fields(order_id = %id))]
async fn cancel_order(
    State(state): State<OrderRoutesState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = user.ok_or(ApiError::NotAuthorized)?;
    let command_id = idempotency_key(&headers)?
        .map_or_else(|| Uuid::new_v4().to_string(), |key| format!("{}:{key}", user.id));
    let cancelled = state
        .orders
        .execute(CommandRequest::from_client(&id, command_id, OrderCommand::CancelOrder { user_id: user.id }))
        .await
        .map_err(|e| command_error(e, order_error))?;
    // Release at once; the process manager does the same (same command id) should this fail.
    let release = TicketCommand::ReleaseTicket { order_id: id.clone() };
    let mut response = with_token(StatusCode::NO_CONTENT.into_response(), &cancelled);
    match state
        .tickets
        .execute(CommandRequest::from_client(&cancelled.state.ticket.id, release_command_id(&id), release))
        .await
    {
        Ok(released) => ConsistencyToken::attach(&mut response, "tickets", released.position),
        Err(error) => tracing::warn!(message = "Failed to release the ticket; the process manager will.", %error),
    }
    Ok(response)
}
