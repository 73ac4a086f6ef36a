//! The library's embedding example (`immich-integrity/examples/count_faults.rs`) scans a
//! generated library and its per-fault counts equal the ground truth's.
//! scripts/test.sh builds it (`cargo build --workspace --bins --examples`).

mod common;

use common::*;
use immich_fixtures::Generation;
use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn count_faults_example_matches_the_ground_truth() {
    let exe = binary()
        .parent()
        .unwrap()
        .join("examples")
        .join("count_faults");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build -p immich-integrity --examples` (scripts/test.sh does)",
        exe.display()
    );
    let lib = generate(Generation::V1_137, 40, true);
    let t = &lib.truth;
    let mut cmd = Command::new(&exe);
    cmd.arg(&t.db_url).arg(&t.media_root);
    for (c, h) in &t.maps {
        if c != &t.container_root {
            cmd.arg(format!("{c}={}", h.display()));
        }
    }
    let out = cmd.env("IMMICH_AS_USER", &t.as_user).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<String, u64> = stdout
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').expect("fault<TAB>count");
            (k.to_string(), v.parse().expect("a count"))
        })
        .collect();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for f in &t.faults {
        *want.entry(f.fault.clone()).or_default() += 1;
    }
    want.insert("total".into(), t.faults.len() as u64);
    assert!(want.len() > 3, "the fixture has several kinds of fault");
    assert_eq!(got, want);

    // Without arguments or environment it explains itself instead of panicking.
    let out = Command::new(&exe)
        .env_remove("DATABASE_URL")
        .env_remove("IMMICH_MEDIA_ROOT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: count_faults"));
}
