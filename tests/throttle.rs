//! `--max-files-rate` and `--max-read-rate` hold: a throttled scan never goes faster than the
//! configured rate (the bound asserted tightly, 10 %), and is not slowed far below it (a
//! generous bound: setup and a loaded machine add time; the benchmark measures it closely).

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::{scan, Finding, Level};
use std::time::Instant;

#[test]
fn files_and_bytes_per_second_hold_the_configured_rate() {
    let lib = generate(Generation::V2_6, 120, false);

    let files_rate = 400.0;
    let mut o = options(&lib.truth);
    o.max_files_rate = Some(files_rate);
    let t = Instant::now();
    let s = scan(&o, &mut Vec::<Finding>::new()).unwrap();
    let took = t.elapsed().as_secs_f64();
    let rate = s.files_checked as f64 / took;
    assert!(s.files_checked > 300, "{}", s.files_checked);
    assert!(
        rate <= files_rate * 1.1,
        "{rate:.0} files/s over {took:.2} s"
    );
    assert!(
        rate >= files_rate * 0.4,
        "{rate:.0} files/s over {took:.2} s"
    );

    // Bytes: about a second's worth at the configured rate.
    let mut o = options(&lib.truth);
    o.level = Level::Hash;
    let unthrottled = scan(&o, &mut Vec::<Finding>::new()).unwrap();
    let bytes_rate = unthrottled.bytes_read as f64 / 1.5;
    o.max_read_rate = Some(bytes_rate);
    o.idle_io = true;
    let t = Instant::now();
    let s = scan(&o, &mut Vec::<Finding>::new()).unwrap();
    let took = t.elapsed().as_secs_f64();
    let rate = s.bytes_read as f64 / took;
    assert_eq!(s.bytes_read, unthrottled.bytes_read);
    assert!(
        rate <= bytes_rate * 1.1,
        "{rate:.0} B/s over {took:.2} s, limit {bytes_rate:.0}"
    );
    assert!(
        rate >= bytes_rate * 0.4,
        "{rate:.0} B/s over {took:.2} s, limit {bytes_rate:.0}"
    );
}
