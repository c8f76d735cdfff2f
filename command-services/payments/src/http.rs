//! `POST /api/payments`: record the attempt, hold the order while it is charged, charge it
//! through the gateway, record the outcome, complete the order and sell the ticket.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use orders_command::domain::{OrderCommand, OrderError, OrderStatus};
use platform::command::{CommandError, CommandRequest};
use platform::http::{ApiError, ConsistencyToken, ErrorEntry, JsonBody, command_error, idempotency_key};
use platform::session::{CurrentUser, SessionKeys};
use serde_json::json;

use crate::domain::{PaymentCommand, PaymentError, payment_id_for};
use crate::settlement::{SettleError, Settled, Settlement};

/// What the payment route needs.
#[derive(Clone)]
pub struct PaymentRoutesState {
    /// The steps of a payment, on the command sides of payments, orders and tickets.
    pub settlement: Arc<Settlement>,
    /// Session verification.
    pub keys: SessionKeys,
}

impl FromRef<PaymentRoutesState> for SessionKeys {
    fn from_ref(state: &PaymentRoutesState) -> Self {
        state.keys.clone()
    }
}

/// The routes, with their state.
pub fn router(state: PaymentRoutesState) -> Router {
    Router::new().route("/api/payments", post(create_payment)).with_state(state)
}

fn non_empty(body: &serde_json::Value, field: &str, message: &str) -> Result<String, ErrorEntry> {
    match body.get(field).and_then(serde_json::Value::as_str).map(str::trim) {
        Some(v) if !v.is_empty() && v.len() <= 200 => Ok(v.to_string()),
        _ => Err(ErrorEntry::field(field, message)),
    }
}

/// The card token and order id of a `POST /api/payments` body, every bad field named.
pub fn parse_payment_body(body: &serde_json::Value) -> Result<(String, String), ApiError> {
    let token = non_empty(body, "token", "Token must be provided");
    let order_id = non_empty(body, "orderId", "OrderId must be provided");
    match (token, order_id) {
        (Ok(t), Ok(o)) => Ok((t, o)),
        (t, o) => Err(ApiError::Validation([t.err(), o.err()].into_iter().flatten().collect())),
    }
}

fn settle_error(error: SettleError) -> ApiError {
    match error {
        SettleError::Unavailable(reason) => ApiError::Unavailable(reason),
        SettleError::Unexpected(reason) => ApiError::Unexpected(anyhow::anyhow!(reason)),
    }
}

#[tracing::instrument(name = "POST /api/payments", skip_all)]
async fn create_payment(
    State(state): State<PaymentRoutesState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let user = user.ok_or(ApiError::NotAuthorized)?;
    let (token, order_id) = parse_payment_body(&body)?;
    let settlement = &state.settlement;
    let (order, _) = settlement.orders.pipeline().state(&order_id);
    if !order.exists {
        return Err(ApiError::NotFound);
    }
    if order.user_id != user.id {
        return Err(ApiError::NotAuthorized);
    }
    let payment_id = payment_id_for(&order_id);
    let paid = || (StatusCode::CREATED, Json(json!({ "id": payment_id }))).into_response();
    if order.status == OrderStatus::Complete {
        return if order.payment_id.as_deref() == Some(payment_id.as_str()) {
            Ok(paid())
        } else {
            Err(ApiError::BadRequest(OrderError::AlreadyPaid.to_string()))
        };
    }
    if order.status == OrderStatus::Cancelled {
        return Err(ApiError::BadRequest(OrderError::NotPayable.to_string()));
    }

    // The attempt is in the log before the gateway hears of it. The request's key names the
    // command, so a retry of this request goes on with its attempt, not a new one.
    let key = idempotency_key(&headers)?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let start = PaymentCommand::StartPayment {
        order_id: order_id.clone(),
        amount_cents: order.ticket.price_minor,
        // Stripe names currencies in lower case.
        currency: order.ticket.currency.code().to_ascii_lowercase(),
        token,
    };
    let started = settlement
        .payments
        .execute(CommandRequest::from_client(&payment_id, format!("start:{payment_id}:{}:{key}", user.id), start))
        .await
        .map_err(|e| command_error(e, |error| ApiError::BadRequest(error.to_string())))?;
    let Some(attempt) = started.state.in_flight.clone() else {
        return Err(ApiError::BadRequest(PaymentError::AlreadyPaid.to_string()));
    };

    // While it is charged the order neither lapses nor is cancelled.
    let hold = OrderCommand::AwaitPayment { payment_id: payment_id.clone() };
    let awaiting = settlement
        .orders
        .execute(CommandRequest::from_client(&order_id, format!("await:{payment_id}:{}", attempt.attempt), hold))
        .await;
    if let Err(error) = awaiting {
        if let CommandError::Rejected(refused) = &error {
            // Nothing was charged: the attempt ends here.
            settlement
                .end_attempt(&payment_id, attempt.attempt, &refused.to_string())
                .await
                .map_err(|e| command_error(e, |error| ApiError::BadRequest(error.to_string())))?;
        }
        return Err(command_error(error, |refused| ApiError::BadRequest(refused.to_string())));
    }

    match settlement.settle(&payment_id, &order_id, &attempt).await.map_err(settle_error)? {
        Settled::Paid { completed, sold } => {
            let mut response = paid();
            ConsistencyToken::attach(&mut response, "orders", completed.position);
            ConsistencyToken::attach(&mut response, "tickets", sold.and_then(|s| s.position));
            Ok(response)
        }
        Settled::Declined(reason) => Err(ApiError::BadRequest(reason)),
        Settled::Refunded(reason) => Err(ApiError::BadRequest(format!("{reason}; the charge was refunded"))),
    }
}
