//! Tokens that authenticate one instance to another on the internal listener (command
//! forwarding). They are not sessions: they are signed with a key derived from `JWT_KEY` for
//! this purpose alone, carry their own audience and no user, and live a few seconds, so a
//! token seen on the wire is useless as a session and soon useless as a peer token too.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Header carrying a peer token.
pub const PEER_TOKEN_HEADER: &str = "x-ticketing-peer";
/// Audience of peer tokens; session tokens carry none.
pub const PEER_AUDIENCE: &str = "ticketing-peer";
/// How long a peer token is valid: one forwarded call, with room for the request's deadline.
pub const PEER_TOKEN_LIFETIME_SECONDS: i64 = 15;
/// Tolerated clock difference between pods.
const CLOCK_SKEW_SECONDS: u64 = 2;
/// What the peer key is derived for: changing it invalidates every peer token at once.
const DERIVATION_LABEL: &[u8] = b"ticketing/peer-token/v1";

#[derive(Debug, Serialize, Deserialize)]
struct PeerClaims {
    aud: String,
    iat: i64,
    exp: i64,
}

/// Mints and checks peer tokens.
#[derive(Clone)]
pub struct PeerKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKeys(..)")
    }
}

impl PeerKeys {
    /// Keys derived from the shared secret (`JWT_KEY`): HMAC-SHA256 of a fixed label, so the
    /// session key itself never signs a peer token and no session verifies as one.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(DERIVATION_LABEL);
        let key = mac.finalize().into_bytes();
        Self { encoding: EncodingKey::from_secret(&key), decoding: DecodingKey::from_secret(&key) }
    }

    /// A token issued at `now` (seconds since the Unix epoch).
    pub fn mint(&self, now: i64) -> String {
        let claims = PeerClaims { aud: PEER_AUDIENCE.into(), iat: now, exp: now + PEER_TOKEN_LIFETIME_SECONDS };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// Whether `token` is a peer token of this deployment that has not expired.
    pub fn verify(&self, token: &str) -> bool {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = CLOCK_SKEW_SECONDS;
        validation.set_audience(&[PEER_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        let Ok(data) = jsonwebtoken::decode::<PeerClaims>(token, &self.decoding, &validation) else {
            return false;
        };
        // A token minted far ahead (a peer's clock, or a forgery with a long life) is refused:
        // no peer token is valid for more than its lifetime.
        let now = chrono::Utc::now().timestamp();
        let skew = CLOCK_SKEW_SECONDS as i64;
        data.claims.iat <= now + skew && data.claims.exp - data.claims.iat <= PEER_TOKEN_LIFETIME_SECONDS
    }

    /// Whether a request carries a valid peer token.
    pub fn authorises(&self, request: &Request) -> bool {
        request
            .headers()
            .get(PEER_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|token| self.verify(token))
    }
}

/// Middleware of the internal listener's routes: a request without a valid peer token is
/// answered 401 before its body is read.
pub async fn require_peer_token(State(keys): State<PeerKeys>, request: Request, next: Next) -> Response {
    if !keys.authorises(&request) {
        return crate::http::ApiError::NotAuthorized.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionKeys;

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn a_fresh_peer_token_is_accepted() {
        let keys = PeerKeys::from_secret(b"shared");
        assert!(keys.verify(&keys.mint(now())));
    }

    #[test]
    fn expired_foreign_and_long_lived_peer_tokens_are_refused() {
        let keys = PeerKeys::from_secret(b"shared");
        assert!(!keys.verify(&keys.mint(now() - PEER_TOKEN_LIFETIME_SECONDS - 10)));
        assert!(!PeerKeys::from_secret(b"other").verify(&keys.mint(now())));
        assert!(!keys.verify(&keys.mint(now() + 3600)), "a token minted in the future");
        let long = PeerClaims { aud: PEER_AUDIENCE.into(), iat: now(), exp: now() + 3600 };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &long, &keys.encoding).unwrap();
        assert!(!keys.verify(&token), "a token living longer than the lifetime");
    }

    #[test]
    fn sessions_and_peer_tokens_never_stand_in_for_each_other() {
        let secret = b"shared";
        let sessions = SessionKeys::new(secret, 3600, false);
        let peers = PeerKeys::from_secret(secret);
        assert!(sessions.verify(&peers.mint(now())).is_none());
        assert!(!peers.verify(&sessions.mint("u1", "a@b.c", now())));
    }
}
