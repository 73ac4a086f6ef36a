//! The repair stage: what is written to the database or asked of the server, always journaled
//! first. `relink` repoints rows at files that moved, `regenerate` has Immich rebuild broken
//! derivatives, `api` talks to the server, `saved_report` reads a report back to drive a repair,
//! and `cascade` saves and restores the rows a delete cascades to.

pub mod api;
pub(crate) mod cascade;
pub(crate) mod journal;
pub mod regenerate;
pub mod relink;
pub(crate) mod saved_report;
