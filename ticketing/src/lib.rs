//! The `ticketing` launcher: runs every component in one process (`up`), one component
//! (`serve`), or the operator and analyst commands (`init`, `rebuild`, `dead-letters`, `export`, `history`).

pub mod app;
pub mod dead_letters;
pub mod export;
pub mod history;
pub mod migration;
pub mod rebuild;
pub mod settings;
pub mod users;
pub mod web;
