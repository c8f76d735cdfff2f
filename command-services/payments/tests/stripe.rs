//! The Stripe adapter against a local HTTP stub of Stripe's charges API.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Form, Json, Router};
use payments_command::gateway::{ChargeError, PaymentGateway, StripeGateway};
use serde_json::json;

type Seen = Arc<Mutex<Vec<(String, String, Vec<(String, String)>)>>>;

async fn charges(State(seen): State<Seen>, headers: HeaderMap, Form(form): Form<Vec<(String, String)>>) -> (StatusCode, Json<serde_json::Value>) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    seen.lock().unwrap().push((auth.clone(), key, form.clone()));
    if auth != "Bearer sk_test_123" {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})));
    }
    let source = form.iter().find(|(k, _)| k == "source").map(|(_, v)| v.as_str()).unwrap_or_default();
    match source {
        "tok_visa" => (StatusCode::OK, Json(json!({"id": "ch_stub_1", "object": "charge", "paid": true}))),
        "tok_chargeDeclined" => (
            StatusCode::PAYMENT_REQUIRED,
            Json(json!({"error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}})),
        ),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": {"type": "api_error", "message": "boom"}}))),
    }
}

#[tokio::test]
async fn the_stripe_adapter_charges_declines_and_reports_outages() {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/v1/charges", post(charges)).with_state(seen.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let stripe = StripeGateway::new(&base, "sk_test_123");
    let charge = stripe.charge(1250, "usd", "tok_visa", "pay-1").await.unwrap();
    assert_eq!(charge.id, "ch_stub_1");
    {
        let seen = seen.lock().unwrap();
        let (auth, key, form) = &seen[0];
        assert_eq!(auth, "Bearer sk_test_123");
        assert_eq!(key, "pay-1");
        assert!(form.contains(&("amount".into(), "1250".into())));
        assert!(form.contains(&("currency".into(), "usd".into())));
    }
    assert_eq!(
        stripe.charge(1250, "usd", "tok_chargeDeclined", "pay-2").await,
        Err(ChargeError::Declined("Your card was declined.".into()))
    );
    assert!(matches!(stripe.charge(1250, "usd", "tok_other", "pay-3").await, Err(ChargeError::Unavailable(_))));
    let wrong_key = StripeGateway::new(&base, "sk_wrong");
    assert!(matches!(wrong_key.charge(1250, "usd", "tok_visa", "pay-4").await, Err(ChargeError::Unavailable(_))));
    server.abort();
    let unreachable = StripeGateway::new("http://127.0.0.1:9", "sk_test_123");
    assert!(matches!(unreachable.charge(1, "usd", "tok_visa", "pay-5").await, Err(ChargeError::Unavailable(_))));
}
