//! The users command service: sign-up decided by the `users` topic's keying (lower-cased
//! email), sign-in against the user's state, and the session routes.

pub mod domain;
pub mod http;
pub mod throttle;
