//! Hostile session cookies, bearer tokens, peer tokens and consistency tokens. Nothing may
//! panic, and nothing but a token signed with the deployment's key may ever authenticate.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use platform::peer::PeerKeys;
use platform::session::SessionKeys;

const SECRET: &[u8] = b"fuzzing-secret-key";

fuzz_target!(|data: &[u8]| {
    let sessions = SessionKeys::new(SECRET, 3600, false);
    let peers = PeerKeys::from_secret(SECRET);
    let text = String::from_utf8_lossy(data);
    assert!(!peers.verify(&text), "a fuzzed peer token verified: {text:?}");
    let _ = platform::http::ConsistencyToken::parse(&text);
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    for (name, prefix) in [(header::COOKIE, "express:sess="), (header::AUTHORIZATION, "Bearer "), (header::COOKIE, "")] {
        let mut headers = HeaderMap::new();
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend_from_slice(value.as_bytes());
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { continue };
        headers.insert(name, value);
        assert!(sessions.current_user(&headers).is_none(), "a fuzzed session authenticated: {headers:?}");
        let _ = platform::http::ConsistencyToken::for_topic(&headers, "tickets");
    }
});
