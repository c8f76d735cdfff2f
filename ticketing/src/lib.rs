//! The `ticketing` launcher: runs every component in one process (`up`), one component
//! (`serve`), or the operator commands (`rebuild`).

pub mod app;
pub mod rebuild;
pub mod settings;
