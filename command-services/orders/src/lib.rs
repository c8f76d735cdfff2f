//! The orders command service: the Order aggregate, its HTTP endpoints (which reserve the
//! ticket through the ticket's owner), and the process manager that keeps orders and tickets
//! in step.

pub mod domain;
pub mod http;
pub mod saga;
