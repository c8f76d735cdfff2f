//! Projectors: workers that fold events into read models.

pub mod orders;
pub mod tickets;
