//! The tickets command service: the Ticket aggregate and its HTTP command endpoints.

pub mod domain;
pub mod http;
