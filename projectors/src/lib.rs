//! Projectors: workers that fold events into read models.

pub mod tickets;
