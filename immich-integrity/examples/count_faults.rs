//! Embeds the library: scans an Immich database and counts faults by kind, no CLI code.
//!
//! ```text
//! cargo run -p immich-integrity --example count_faults -- DB_URL MEDIA_ROOT [CONTAINER=HOST ...]
//! ```
//! `DATABASE_URL` and `IMMICH_MEDIA_ROOT` stand in for missing arguments; `IMMICH_AS_USER`
//! (`uid:gid`) checks read access as the Immich server's user. Prints `fault<TAB>count` lines,
//! then `total`.

use immich_integrity::{scan, Finding, Identity, Observer, ScanOptions};
use std::collections::BTreeMap;

/// Counts findings per fault as the scan hands them over.
struct Counter(BTreeMap<String, u64>);

impl Observer for Counter {
    fn finding(&mut self, f: &Finding) {
        *self.0.entry(f.fault.to_string()).or_default() += 1;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const USAGE: &str = "usage: count_faults DB_URL MEDIA_ROOT [CONTAINER=HOST ...]";
    let mut args = std::env::args().skip(1);
    let db_url = args.next().or_else(|| std::env::var("DATABASE_URL").ok());
    let media_root = args
        .next()
        .or_else(|| std::env::var("IMMICH_MEDIA_ROOT").ok());
    let mut opts = ScanOptions::new(db_url.ok_or(USAGE)?);
    opts.media_root = Some(media_root.ok_or(USAGE)?.into());
    for map in args {
        let (container, host) = map.split_once('=').ok_or(USAGE)?;
        opts.maps.push((container.to_string(), host.into()));
    }
    if let Ok(user) = std::env::var("IMMICH_AS_USER") {
        opts.as_user = Some(Identity::parse(&user)?);
    }
    let mut counter = Counter(BTreeMap::new());
    let summary = scan(&opts, &mut counter)?;
    for (fault, n) in &counter.0 {
        println!("{fault}\t{n}");
    }
    println!("total\t{}", summary.findings);
    Ok(())
}
