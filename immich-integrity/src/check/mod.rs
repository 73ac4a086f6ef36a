//! The check stage: observe each file a row points at and classify what was seen. The
//! [`Checker`](checker::Checker) holds what every worker shares; `formats` proves from head
//! and tail that a file is the format it claims and was written to the end (one file per
//! format family); `decode` is the `full` level; `manifest` is a cache the checker asks before
//! reading a file and tells what it read. Classification into a [`Fault`](crate::Fault)
//! happens in this module and nowhere else. The `engine` runs the file checks on I/O threads,
//! as many at once as the storage rewards.

mod cached;
pub(crate) mod checker;
pub(crate) mod codecs;
mod context;
pub(crate) mod coverage;
pub mod decode;
pub(crate) mod engine;
pub mod formats;
pub mod manifest;
pub(crate) mod unreachable;

pub(crate) use checker::Checker;
