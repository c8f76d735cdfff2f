//! The `PaymentGateway` port and its adapters: a sandbox that behaves like Stripe for Stripe's
//! test tokens (the default), and Stripe's charges and refunds API over HTTP.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

/// A successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The gateway's charge id.
    pub id: String,
}

/// A successful refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The gateway's refund id.
    pub id: String,
}

/// Why the gateway did not do it, classified like Stripe's `error.type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// `card_error`: the card was declined; another card is another attempt.
    #[error("{0}")]
    Declined(String),
    /// `invalid_request_error`: the request cannot succeed as it is (no such token, a charge
    /// refunded already).
    #[error("{0}")]
    Invalid(String),
    /// `idempotency_error`: the key was used with other parameters (a bug of ours).
    #[error("Idempotency key reused with other parameters: {0}")]
    IdempotencyConflict(String),
    /// `api_error`, `rate_limit_error`, an authentication failure or no answer: the outcome
    /// is unknown; the same request with the same key can be sent again.
    #[error("Payment gateway unavailable: {0}")]
    Unavailable(String),
}

/// Takes money, and gives it back.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charges `amount_cents` in `currency` to `token`. The same `idempotency_key` with the
    /// same parameters returns the first result instead of charging twice.
    async fn charge(
        &self,
        amount_cents: i64,
        currency: &str,
        token: &str,
        idempotency_key: &str,
    ) -> Result<Charge, ChargeError>;

    /// Refunds the whole of `charge_id`; the same `idempotency_key` returns the first refund.
    async fn refund(&self, charge_id: &str, idempotency_key: &str) -> Result<Refund, ChargeError>;
}

type ChargeResult = Result<Charge, ChargeError>;

/// Stripe's test tokens without any network, with Stripe's rules: `tok_visa` (and other `tok_`
/// card tokens) succeed, `tok_chargeDeclined` and friends decline; a key's first result is
/// kept and returned again (a key reused with other parameters is an idempotency error); a
/// charge is refunded once. Charge and refund ids derive from their keys, so a sandbox that
/// restarted still answers a retried key with the same charge.
#[derive(Debug, Default)]
pub struct SandboxGateway {
    /// Per idempotency key: the parameters it was first used with, and its result.
    charges: Mutex<HashMap<String, (String, ChargeResult)>>,
    refunds: Mutex<HashMap<String, (String, Refund)>>,
}

impl SandboxGateway {
    fn decide(amount_cents: i64, token: &str, idempotency_key: &str) -> Result<Charge, ChargeError> {
        if amount_cents <= 0 {
            return Err(ChargeError::Invalid("Invalid positive integer".into()));
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
            _ => Err(ChargeError::Invalid(format!("No such token: '{token}'"))),
        }
    }
}

#[async_trait]
impl PaymentGateway for SandboxGateway {
    async fn charge(
        &self,
        amount_cents: i64,
        currency: &str,
        token: &str,
        idempotency_key: &str,
    ) -> Result<Charge, ChargeError> {
        let parameters = format!("{amount_cents}:{currency}:{token}");
        let mut charges = self.charges.lock().expect("sandbox lock");
        if let Some((seen, result)) = charges.get(idempotency_key) {
            if *seen != parameters {
                return Err(ChargeError::IdempotencyConflict(idempotency_key.to_string()));
            }
            return result.clone();
        }
        let result = Self::decide(amount_cents, token, idempotency_key);
        charges.insert(idempotency_key.to_string(), (parameters, result.clone()));
        result
    }

    async fn refund(&self, charge_id: &str, idempotency_key: &str) -> Result<Refund, ChargeError> {
        if !charge_id.starts_with("ch_sandbox_") {
            return Err(ChargeError::Invalid(format!("No such charge: '{charge_id}'")));
        }
        let mut refunds = self.refunds.lock().expect("sandbox lock");
        if let Some((key, refund)) = refunds.get(charge_id) {
            return if key == idempotency_key {
                Ok(refund.clone())
            } else {
                Err(ChargeError::Invalid(format!("Charge {charge_id} has already been refunded.")))
            };
        }
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, idempotency_key.as_bytes()).simple();
        let refund = Refund { id: format!("re_sandbox_{id}") };
        refunds.insert(charge_id.to_string(), (idempotency_key.to_string(), refund.clone()));
        Ok(refund)
    }
}

/// Stripe's charges and refunds API (`POST /v1/charges`, `POST /v1/refunds`).
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

    async fn post(&self, path: &str, idempotency_key: &str, form: &[(&str, &str)]) -> Result<serde_json::Value, ChargeError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.secret_key)
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            .map_err(|e| ChargeError::Unavailable(e.to_string()))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| ChargeError::Unavailable(e.to_string()))?;
        if status.is_success() {
            return Ok(body);
        }
        let message = body["error"]["message"].as_str().unwrap_or("The request failed").to_string();
        // Our key is wrong: nothing the client can change.
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(ChargeError::Unavailable(format!("{status}: {message}")));
        }
        Err(match body["error"]["type"].as_str() {
            Some("card_error") => ChargeError::Declined(message),
            Some("invalid_request_error") => ChargeError::Invalid(message),
            Some("idempotency_error") => ChargeError::IdempotencyConflict(message),
            _ => ChargeError::Unavailable(format!("{status}: {message}")),
        })
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
        let body = self
            .post("/v1/charges", idempotency_key, &[("amount", amount.as_str()), ("currency", currency), ("source", token)])
            .await?;
        body["id"]
            .as_str()
            .map(|id| Charge { id: id.to_string() })
            .ok_or_else(|| ChargeError::Unavailable("the charge has no id".into()))
    }

    async fn refund(&self, charge_id: &str, idempotency_key: &str) -> Result<Refund, ChargeError> {
        let body = self.post("/v1/refunds", idempotency_key, &[("charge", charge_id)]).await?;
        body["id"]
            .as_str()
            .map(|id| Refund { id: id.to_string() })
            .ok_or_else(|| ChargeError::Unavailable("the refund has no id".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sandbox_keeps_stripes_rules() {
        let sandbox = SandboxGateway::default();
        let first = sandbox.charge(2000, "usd", "tok_visa", "order-1:attempt-1").await.unwrap();
        let again = sandbox.charge(2000, "usd", "tok_visa", "order-1:attempt-1").await.unwrap();
        assert_eq!(first, again, "the same idempotency key gives the same charge");
        assert_eq!(
            sandbox.charge(2000, "usd", "tok_mastercard", "order-1:attempt-1").await,
            Err(ChargeError::IdempotencyConflict("order-1:attempt-1".into())),
            "a key is bound to its parameters"
        );
        let declined = sandbox.charge(2000, "usd", "tok_chargeDeclined", "order-2:attempt-1").await;
        assert_eq!(declined, Err(ChargeError::Declined("Your card was declined.".into())));
        assert_eq!(sandbox.charge(2000, "usd", "tok_chargeDeclined", "order-2:attempt-1").await, declined, "a decline is kept too");
        // Another card is another attempt, with its own key.
        assert!(sandbox.charge(2000, "usd", "tok_visa", "order-2:attempt-2").await.is_ok());
        assert!(matches!(sandbox.charge(2000, "usd", "garbage", "order-3:attempt-1").await, Err(ChargeError::Invalid(_))));
        // A restarted sandbox answers a retried key with the same charge.
        assert_eq!(SandboxGateway::default().charge(2000, "usd", "tok_visa", "order-1:attempt-1").await.unwrap(), first);

        let refund = sandbox.refund(&first.id, "refund:order-1").await.unwrap();
        assert_eq!(sandbox.refund(&first.id, "refund:order-1").await.unwrap(), refund);
        assert!(matches!(sandbox.refund(&first.id, "refund:other").await, Err(ChargeError::Invalid(_))), "refunded once");
    }
}
