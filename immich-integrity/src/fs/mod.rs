//! The file-system stage: the media roots and their markers, the map from stored paths to host
//! paths, the one-`fstatat` probe beneath a root, access as another uid, and whole-file reads
//! in blocks with the hashes computed from them, the watchdog that gives up on a share that
//! stopped answering, and the limits on files and bytes per second.

pub(crate) mod access;
pub(crate) mod blocks;
pub(crate) mod pathmap;
pub(crate) mod probe;
pub(crate) mod roots;
pub(crate) mod throttle;
pub(crate) mod watch;
pub(crate) mod writes;
