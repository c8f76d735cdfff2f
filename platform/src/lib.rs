//! The shared kernel of the ticketing services: event sourcing, the log client, the read-store
//! port and its adapters, sessions, HTTP errors and config.

pub mod aggregate;
pub mod arbiter;
pub mod audit;
pub mod codec;
pub mod command;
pub mod config;
pub mod deadline;
pub mod forwarding;
pub mod http;
pub mod inbox;
pub mod local;
pub mod log;
pub mod metrics;
pub mod money;
pub mod ownership;
pub mod peer;
pub mod projection;
pub mod reaction;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod vault;
