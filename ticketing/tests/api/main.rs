//! End-to-end tests against a real Apache Kafka broker (shared by the tests of this binary,
//! or a test's own where it stops or kills it) and the read store, all started on free
//! loopback ports by the harness and stopped afterwards. Tests declared with `both_stores!` run on the embedded store
//! and on the Cassandra node the binary shares.

#[macro_use]
mod helpers;

mod analysts;
mod arbiter;
mod bad_input;
mod concurrency;
mod correctness;
mod durability;
mod failures;
mod live;
mod load;
mod orders;
mod payments;
mod privacy;
mod restarts;
mod security;
mod tickets;
mod transactions;
mod users;
mod web;
