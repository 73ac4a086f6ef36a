//! The database stage: connecting (one runtime helper for every blocking caller), detecting
//! which Immich schema a database has, and streaming the rows to check in bounded,
//! primary-key-ordered pages, narrowed in SQL by the source filters.

pub(crate) mod conn;
pub(crate) mod filters;
pub(crate) mod merge;
pub(crate) mod rows;
pub(crate) mod runtime;
pub(crate) mod schema;
pub(crate) mod source;
pub(crate) mod sql;
