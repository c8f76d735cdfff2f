//! Avro schemas of every event, the typed Rust events, the Confluent wire-format codec, the
//! compatibility gate and a Confluent-compatible schema registry for single-machine use.

pub mod catalog;
pub mod codec;
pub mod events;
pub mod evolution;
pub mod orders;
pub mod payments;
pub mod tickets;
pub mod users;
pub mod compatibility;
pub mod registry;
pub mod transcode;
