//! Drains the row stream of a database and times it (no file checks): what the source
//! alone costs. Usage: cargo run --release --example drain_source -- DB_URL
//! With IMMICH_INTEGRITY_JOIN_STREAM=1 the assets come through the join query (as a filtered
//! scan reads them) instead of the three merged cursors.
use immich_integrity::{Source, SourceOptions};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: drain_source DB_URL")?;
    let t = Instant::now();
    let (mut rows, mut files) = (0u64, 0u64);
    let mut opts = SourceOptions::new(url);
    opts.join_stream = std::env::var("IMMICH_INTEGRITY_JOIN_STREAM").is_ok_and(|v| v == "1");
    for batch in Source::open(opts)? {
        let batch = batch?;
        rows += batch.len() as u64;
        files += batch.iter().map(|r| r.files.len() as u64).sum::<u64>();
    }
    println!(
        "{rows} rows, {files} files in {:.3} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
