//! The users command service: sign-up decided by the `users` topic's keying (the email's
//! index key), sign-in against the user's sealed personal data, erasure, and the session
//! routes.

pub mod domain;
pub mod http;
pub mod personal;
pub mod throttle;
