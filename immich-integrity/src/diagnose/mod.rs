//! The diagnose stage: tools that explain a library rather than check each file. `doctor`
//! checks that a scan can run, `orphans` finds files no row points at, `envfile` reads an
//! Immich install's `.env`, and `explain` explains Immich's own `integrity_report`.

pub mod doctor;
pub mod envfile;
pub mod explain;
pub mod next_steps;
pub mod orphans;
