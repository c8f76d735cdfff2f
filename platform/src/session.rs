//! Sessions compatible with the reference app: an HS256 JWT carried in the `express:sess`
//! cookie (base64 of `{"jwt":"…"}`) or in an `Authorization: Bearer` header.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Name of the session cookie the reference app's cookie-session writes.
pub const SESSION_COOKIE: &str = "express:sess";

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub id: String,
    /// User email.
    pub email: String,
    /// Issued at (seconds since the Unix epoch).
    pub iat: i64,
    /// Expiry (seconds since the Unix epoch).
    pub exp: i64,
}

/// Signs and verifies session tokens with `JWT_KEY`.
#[derive(Clone)]
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime_seconds: i64,
    secure_cookie: bool,
}

impl SessionKeys {
    /// Keys from a shared secret; tokens live `lifetime_seconds`.
    pub fn new(secret: &[u8], lifetime_seconds: i64, secure_cookie: bool) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            lifetime_seconds,
            secure_cookie,
        }
    }

    /// Mints a token for a user, issued at `now` (seconds).
    pub fn mint(&self, id: &str, email: &str, now: i64) -> String {
        let claims = Claims {
            id: id.to_string(),
            email: email.to_string(),
            iat: now,
            exp: now + self.lifetime_seconds,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// Verifies a token; a forged, malformed or expired one is `None`.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok().map(|d| d.claims)
    }

    /// The `Set-Cookie` value that carries a token.
    pub fn session_cookie(&self, token: &str) -> String {
        let value = STANDARD.encode(serde_json::json!({ "jwt": token }).to_string());
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax{secure}")
    }

    /// The `Set-Cookie` value that clears the session.
    pub fn cleared_cookie(&self) -> String {
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    }

    /// The current user of a request: bearer token first, then the session cookie.
    pub fn current_user(&self, headers: &HeaderMap) -> Option<Claims> {
        if let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.verify(token.trim());
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .and_then(|(_, value)| token_from_cookie(value))
            .and_then(|token| self.verify(&token))
    }
}

fn token_from_cookie(value: &str) -> Option<String> {
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let session: serde_json::Value = serde_json::from_slice(&decoded).ok()?;
    session.get("jwt")?.as_str().map(str::to_string)
}

/// The signed-in user of a request, if any.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Option<Claims>);

impl<S> FromRequestParts<S> for CurrentUser
where
    SessionKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(CurrentUser(SessionKeys::from_ref(state).current_user(&parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys() -> SessionKeys {
        SessionKeys::new(b"test-key", 3600, false)
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn cookie_round_trip_gives_the_user() {
        let keys = keys();
        let token = keys.mint("u1", "a@b.c", now());
        let cookie = keys.session_cookie(&token);
        let pair = cookie.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(pair).unwrap());
        assert_eq!(keys.current_user(&headers).unwrap().id, "u1");
    }

    #[test]
    fn forged_expired_and_malformed_sessions_are_no_user() {
        let keys = keys();
        let forged = SessionKeys::new(b"other", 3600, false).mint("u1", "a@b.c", now());
        assert!(keys.verify(&forged).is_none());
        let expired = keys.mint("u1", "a@b.c", now() - 7200);
        assert!(keys.verify(&expired).is_none());
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("express:sess=!!notbase64"));
        assert!(keys.current_user(&headers).is_none());
    }

    #[test]
    fn bearer_token_is_accepted() {
        let keys = keys();
        let token = keys.mint("u2", "x@y.z", now());
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        assert_eq!(keys.current_user(&headers).unwrap().email, "x@y.z");
    }
}
