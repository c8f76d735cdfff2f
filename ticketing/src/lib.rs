//! The `ticketing` launcher: runs every component in one process (`up`), one component
//! (`serve`), or the operator commands (`init`, `rebuild`, `dead-letters`).

pub mod app;
pub mod dead_letters;
pub mod rebuild;
pub mod settings;
