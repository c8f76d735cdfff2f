//! End-to-end tests against a real local broker (Tansu) and the embedded store, both started on
//! free loopback ports by the harness and stopped afterwards.

mod arbiter;
mod bad_input;
mod concurrency;
mod durability;
mod failures;
mod helpers;
mod load;
mod orders;
mod payments;
mod tickets;
mod users;
