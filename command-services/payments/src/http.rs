//! `POST /api/payments`: charge the order's price through the gateway, record the payment,
//! complete the order and sell the ticket.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use orders_command::domain::{Order, OrderCommand, OrderError, OrderStatus};
use orders_command::saga::{complete_command_id, sell_command_id};
use platform::command::CommandRequest;
use platform::forwarding::CommandService;
use platform::http::{ApiError, ConsistencyToken, ErrorEntry, JsonBody, command_error};
use platform::session::{CurrentUser, SessionKeys};
use serde_json::json;
use tickets_command::domain::{Ticket, TicketCommand};

use crate::domain::{Payment, PaymentCommand, payment_id_for};
use crate::gateway::{ChargeError, PaymentGateway};

/// What the payment route needs.
#[derive(Clone)]
pub struct PaymentRoutesState {
    /// The command side of payments.
    pub payments: Arc<CommandService<Payment>>,
    /// The command side of orders (its state answers "is it payable?").
    pub orders: Arc<CommandService<Order>>,
    /// The command side of tickets.
    pub tickets: Arc<CommandService<Ticket>>,
    /// The configured gateway.
    pub gateway: Arc<dyn PaymentGateway>,
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

#[tracing::instrument(name = "POST /api/payments", skip_all)]
async fn create_payment(
    State(state): State<PaymentRoutesState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let user = user.ok_or(ApiError::NotAuthorized)?;
    let token = non_empty(&body, "token", "Token must be provided");
    let order_id = non_empty(&body, "orderId", "OrderId must be provided");
    let (token, order_id) = match (token, order_id) {
        (Ok(t), Ok(o)) => (t, o),
        (t, o) => return Err(ApiError::Validation([t.err(), o.err()].into_iter().flatten().collect())),
    };

    let (order, _) = state.orders.pipeline().state(&order_id);
    if !order.exists {
        return Err(ApiError::NotFound);
    }
    if order.user_id != user.id {
        return Err(ApiError::NotAuthorized);
    }
    let now = chrono::Utc::now().timestamp_millis();
    let payment_id = payment_id_for(&order_id);
    let already_paid = order.status == OrderStatus::Complete && order.payment_id.as_deref() == Some(&payment_id);
    if !already_paid && !order.is_payable(now) {
        return Err(ApiError::BadRequest(OrderError::NotPayable.to_string()));
    }

    let amount_cents = order.ticket.price_cents;
    let charge = state.gateway.charge(amount_cents, "usd", &token, &payment_id).await.map_err(|e| match e {
        ChargeError::Declined(message) => {
            platform::metrics::METRICS.payment("declined");
            ApiError::BadRequest(message)
        }
        ChargeError::Unavailable(reason) => {
            platform::metrics::METRICS.payment("unavailable");
            ApiError::Unavailable(reason)
        }
    })?;
    platform::metrics::METRICS.payment("succeeded");
    let record = PaymentCommand::RecordPayment {
        order_id: order_id.clone(),
        charge_id: charge.id,
        amount_cents,
        currency: "usd".into(),
    };
    state
        .payments
        .execute(CommandRequest::from_client(&payment_id, format!("payment:{order_id}"), record))
        .await
        .map_err(|e| command_error(e, |error| ApiError::BadRequest(error.to_string())))?;

    // The process manager does the same on PaymentCreated (same command ids); doing it here
    // lets the client see the order complete as soon as we answer.
    let complete = OrderCommand::CompleteOrder { payment_id: payment_id.clone() };
    let completed = state
        .orders
        .execute(CommandRequest::from_client(&order_id, complete_command_id(&order_id), complete))
        .await
        .map_err(|e| {
            command_error(e, |error| {
                tracing::error!(message = "Charged an order that is no longer payable; refund it.", %order_id, %error);
                ApiError::BadRequest(error.to_string())
            })
        })?;
    let mut response = (StatusCode::CREATED, Json(json!({ "id": payment_id }))).into_response();
    ConsistencyToken::attach(&mut response, "orders", completed.position);
    let sell = TicketCommand::SellTicket { order_id: order_id.clone() };
    match state
        .tickets
        .execute(CommandRequest::from_client(&completed.state.ticket.id, sell_command_id(&order_id), sell))
        .await
    {
        Ok(sold) => ConsistencyToken::attach(&mut response, "tickets", sold.position),
        Err(error) => tracing::warn!(message = "Failed to sell the ticket; the process manager will.", %error),
    }
    Ok(response)
}
