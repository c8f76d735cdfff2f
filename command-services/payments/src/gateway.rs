//! The `PaymentGateway` port and its adapters: a sandbox that honours Stripe's test tokens
//! (the default), and Stripe's charges API over HTTP.

use std::time::Duration;

use async_trait::async_trait;

/// A successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The gateway's charge id.
    pub id: String,
}

/// Why a charge did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// The card or token was declined; the order stays payable.
    #[error("{0}")]
    Declined(String),
    /// The gateway could not be reached or failed.
    #[error("Payment gateway unavailable: {0}")]
    Unavailable(String),
}

/// Takes money.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charges `amount_cents` in `currency` to `token`. `idempotency_key` makes a retried
    /// charge return the first result instead of charging twice.
    async fn charge(
        &self,
        amount_cents: i64,
        currency: &str,
        token: &str,
        idempotency_key: &str,
    ) -> Result<Charge, ChargeError>;
}

/// Stripe's test tokens, without any network: `tok_visa` (and other `tok_` card tokens)
/// succeed, `tok_chargeDeclined` and friends decline.
#[derive(Debug, Default, Clone)]
pub struct SandboxGateway;

#[async_trait]
impl PaymentGateway for SandboxGateway {
    async fn charge(
        &self,
        amount_cents: i64,
        _currency: &str,
        token: &str,
        idempotency_key: &str,
    ) -> Result<Charge, ChargeError> {
        if amount_cents <= 0 {
            return Err(ChargeError::Declined("Invalid amount".into()));
        }
        match token {
            "tok_chargeDeclined" | "tok_chargeDeclinedInsufficientFunds" | "tok_chargeDeclinedFraudulent" => {
                Err(ChargeError::Declined("Your card was declined.".into()))
            }
            "tok_chargeDeclinedExpiredCard" => Err(ChargeError::Declined("Your card has expired.".into())),
            t if t.starts_with("tok_") => {
                let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, idempotency_key.as_bytes()).simple();
                Ok(Charge { id: format!("ch_sandbox_{id}") })
            }
            _ => Err(ChargeError::Declined("No such token".into())),
        }
    }
}

/// Stripe's charges API (`POST /v1/charges`).
#[derive(Clone)]
pub struct StripeGateway {
    http: reqwest::Client,
    base_url: String,
    secret_key: String,
}

impl StripeGateway {
    /// A gateway on `base_url` (`https://api.stripe.com` in production) with a secret key.
    pub fn new(base_url: &str, secret_key: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a plain HTTP client builds");
        Self { http, base_url: base_url.trim_end_matches('/').to_string(), secret_key: secret_key.to_string() }
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    async fn charge(
        &self,
        amount_cents: i64,
        currency: &str,
        token: &str,
        idempotency_key: &str,
    ) -> Result<Charge, ChargeError> {
        let amount = amount_cents.to_string();
        let response = self
            .http
            .post(format!("{}/v1/charges", self.base_url))
            .bearer_auth(&self.secret_key)
            .header("Idempotency-Key", idempotency_key)
            .form(&[("amount", amount.as_str()), ("currency", currency), ("source", token)])
            .send()
            .await
            .map_err(|e| ChargeError::Unavailable(e.to_string()))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| ChargeError::Unavailable(e.to_string()))?;
        if status.is_success() {
            return body["id"]
                .as_str()
                .map(|id| Charge { id: id.to_string() })
                .ok_or_else(|| ChargeError::Unavailable("the charge has no id".into()));
        }
        let message = body["error"]["message"].as_str().unwrap_or("The charge failed").to_string();
        // 402 card errors and 400 bad tokens are the client's; the rest is ours.
        if status.as_u16() == 402 || status.as_u16() == 400 {
            Err(ChargeError::Declined(message))
        } else {
            Err(ChargeError::Unavailable(format!("{status}: {message}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sandbox_honours_stripe_test_tokens() {
        let sandbox = SandboxGateway;
        let first = sandbox.charge(2000, "usd", "tok_visa", "order-1").await.unwrap();
        let again = sandbox.charge(2000, "usd", "tok_visa", "order-1").await.unwrap();
        assert_eq!(first, again, "the same idempotency key gives the same charge");
        assert_eq!(
            sandbox.charge(2000, "usd", "tok_chargeDeclined", "order-2").await,
            Err(ChargeError::Declined("Your card was declined.".into()))
        );
        assert!(matches!(sandbox.charge(2000, "usd", "garbage", "order-3").await, Err(ChargeError::Declined(_))));
    }
}
