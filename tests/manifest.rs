//! `--manifest`: a rerun reads only what changed, bit rot is named, a bad manifest file is
//! refused without being touched, and an interrupted scan keeps what it had committed.

mod common;

use common::*;
use immich_fixtures::{inject_bitrot, Generation};
use immich_integrity::{
    scan, Error, Fault, Finding, Level, Manifest, Observer, Progress, ScanOptions, Summary,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn run(opts: &ScanOptions) -> (Summary, Vec<Finding>) {
    let mut findings: Vec<Finding> = Vec::new();
    let s = scan(opts, &mut findings).unwrap();
    assert_eq!(s.completion, immich_integrity::Completion::Complete);
    (s, findings)
}

/// (hits, rereads, new) of a manifest run.
fn counts(s: &Summary) -> (u64, u64, u64) {
    (
        s.manifest_hits.expect("manifest_hits"),
        s.manifest_rereads.expect("manifest_rereads"),
        s.manifest_new.expect("manifest_new"),
    )
}

fn healthy_with_ext<'a>(
    entries: &'a [(PathBuf, immich_integrity::manifest::Entry)],
    exts: &[&str],
    not: &Path,
) -> Option<&'a Path> {
    entries
        .iter()
        .filter(|(p, e)| e.verdict.is_none() && p != not)
        .map(|(p, _)| p.as_path())
        .find(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
        })
}

/// A rotted file a decoder rejects first is `corrupt`, its detail naming the bit rot: count it
/// as the injected bitrot.
fn decoder_first(findings: &mut [Finding]) {
    for x in findings {
        if x.fault == Fault::Corrupt && x.detail.contains("; also bitrot: content changed") {
            x.fault = Fault::Bitrot;
        }
    }
}

#[test]
fn rerun_reads_only_changed_files_and_names_bitrot_on_every_generation() {
    for generation in Generation::ALL {
        let lib = generate(generation, 40, true);
        let dir = tempfile::tempdir_in(base_dir()).unwrap();
        let mpath = dir.path().join("manifest.redb");
        let mut opts = options(&lib.truth);
        opts.manifest = Some(mpath.clone());

        // 1. The first run at `hash` reads everything and builds the manifest.
        opts.level = Level::Hash;
        let (s1, f1) = run(&opts);
        let (hits, rereads, read1) = counts(&s1);
        assert_eq!(
            (hits, rereads),
            (0, 0),
            "{generation}: a new manifest vouches for nothing"
        );
        assert!(read1 > 40, "{generation}: {read1} files read");
        let baseline = finding_keys(&f1);
        // The manifest changes nothing about what is found.
        let mut plain = opts.clone();
        plain.manifest = None;
        assert_same(&finding_keys(&run(&plain).1), &baseline);
        let entries = Manifest::open(&mpath).unwrap().entries().unwrap();
        assert_eq!(
            entries.len() as u64,
            read1,
            "{generation}: one entry per file read"
        );
        assert!(entries.iter().all(|(_, e)| e.level == Level::Hash));
        let faulty = entries.iter().filter(|(_, e)| e.verdict.is_some()).count() as u64;

        // 2. Touch one file, rewrite another with a different size.
        let touched = healthy_with_ext(&entries, &["jpeg", "jpg"], Path::new("")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(touched)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890))
            .unwrap();
        let rewritten =
            healthy_with_ext(&entries, &["xmp"], touched).expect("a healthy sidecar to rewrite");
        let mut xmp = std::fs::read(rewritten).unwrap();
        xmp.extend_from_slice(b"\n\n");
        std::fs::write(rewritten, &xmp).unwrap();

        let (s2, f2) = run(&opts);
        assert_eq!(
            counts(&s2),
            (read1 - 2 - faulty, 2 + faulty, 0),
            "{generation}: only the two changed files (and the {faulty} faulty ones) are read again"
        );
        assert_same(&finding_keys(&f2), &baseline);
        assert!(s2.bytes_read < s1.bytes_read / 2, "{s2:?}");
        assert_eq!(
            s2.checksums_skipped, s1.checksums_skipped,
            "{generation}: path checksums are still counted as skipped on manifest hits"
        );
        let m = Manifest::open(&mpath).unwrap();
        assert_eq!(
            m.get(rewritten).unwrap().unwrap().size,
            xmp.len() as u64,
            "the changed file's entry was updated"
        );
        drop(m);

        // 3. A shallower level trusts the deeper verdicts.
        opts.level = Level::Quick;
        let (s3, f3) = run(&opts);
        assert_eq!(counts(&s3), (read1 - faulty, faulty, 0), "{generation}");
        assert_same(&finding_keys(&f3), &baseline);

        // 4. Bit rot: a changed byte, size and mtime restored.
        let rot = runtime().block_on(inject_bitrot(&lib.fx, 4, 11)).unwrap();
        assert_eq!(rot.len(), 4);
        assert!(rot.iter().any(|t| t.file.as_deref() == Some("original")));
        let mut want = baseline.clone();
        want.extend(truth_keys(&rot));

        // A plain incremental run does not read unchanged files, so it cannot see it...
        let (s4, f4) = run(&opts);
        assert_eq!(counts(&s4), (read1 - faulty, faulty, 0), "{generation}");
        assert_same(&finding_keys(&f4), &baseline);

        // ...a verifying run reads everything and names exactly the rotted files, at either
        // level (bitrot outranks the originals' checksum_mismatch). Should a structural check
        // reject the flipped bit first, the finding is `corrupt` (it outranks bitrot) and its
        // detail names the bit rot.
        opts.verify_manifest = true;
        for level in [Level::Quick, Level::Hash] {
            opts.level = level;
            let (s, mut f) = run(&opts);
            assert_eq!(counts(&s), (0, read1, 0), "{generation} {level:?}");
            if level == Level::Quick {
                assert!(!f.iter().any(|x| x.detail.contains("also bitrot")));
            }
            decoder_first(&mut f);
            assert_same(&finding_keys(&f), &want);
            let rotted: Vec<&Finding> = f.iter().filter(|f| f.fault == Fault::Bitrot).collect();
            assert_eq!(rotted.len(), 4);
            for r in &rotted {
                assert!(r.detail.contains("blake3 was"), "{}", r.detail);
                // Unless a decoder spoke first, an original's detail also gives the SHA-1.
                let decoded_first = r.detail.contains("also bitrot");
                if level == Level::Hash
                    && r.file == Some(immich_integrity::FileKind::Original)
                    && !decoded_first
                {
                    assert!(r.detail.contains("sha1"), "{}", r.detail);
                }
            }
        }

        // Once found, bitrot stays reported by plain runs until the file is restored.
        opts.verify_manifest = false;
        let (s7, mut f7) = run(&opts);
        decoder_first(&mut f7);
        assert_eq!(
            counts(&s7),
            (read1 - faulty - 4, faulty + 4, 0),
            "{generation}"
        );
        assert_same(&finding_keys(&f7), &want);
    }
}

/// Stops the scan after its first batch.
struct StopAfterFirstBatch(Arc<AtomicBool>);
impl Observer for StopAfterFirstBatch {
    fn finding(&mut self, _: &Finding) {}
    fn progress(&mut self, _: &Progress) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn bad_manifest_files_are_refused_untouched_and_interrupted_scans_keep_their_batches() {
    let lib = generate(Generation::V2_6, 30, false);
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let mut opts = options(&lib.truth);
    opts.level = Level::Quick;

    // Garbage (or a photo given by mistake) is an error, and the file is left as it was.
    let garbage = dir.path().join("not-a-manifest.jpg");
    let bytes = b"\xff\xd8\xff\xe0 this is a photo, not a manifest".repeat(100);
    std::fs::write(&garbage, &bytes).unwrap();
    opts.manifest = Some(garbage.clone());
    let e = scan(&opts, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Manifest { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("not-a-manifest.jpg") && msg.contains("not an immich-integrity manifest"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&garbage).unwrap(), bytes);

    // A truncated manifest (say, copied half-way) is refused too, and kept.
    let good = dir.path().join("good.redb");
    opts.manifest = Some(good.clone());
    let (full, _) = run(&opts);
    let total = full.manifest_new.unwrap();
    let half = dir.path().join("half.redb");
    let g = std::fs::read(&good).unwrap();
    std::fs::write(&half, &g[..g.len() / 2]).unwrap();
    opts.manifest = Some(half.clone());
    let e = scan(&opts, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Manifest { .. }), "{e}");
    assert_eq!(std::fs::read(&half).unwrap(), &g[..g.len() / 2]);

    // The exists level reads no content: a manifest there is a usage error.
    opts.manifest = Some(dir.path().join("new.redb"));
    opts.level = Level::Exists;
    let e = scan(&opts, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("`ScanOptions::level` quick"), "{e}");
    opts.level = Level::Quick;

    // An interrupted scan committed the batches it finished; a rerun starts from there.
    let partial = dir.path().join("partial.redb");
    opts.manifest = Some(partial.clone());
    opts.source.batch_size = 4;
    let mut o = opts.clone();
    o.cancel = Arc::new(AtomicBool::new(false));
    let s = scan(&o, &mut StopAfterFirstBatch(o.cancel.clone())).unwrap();
    assert_eq!(s.completion, immich_integrity::Completion::Interrupted);
    let kept = Manifest::open(&partial).unwrap().len().unwrap();
    assert!(kept > 0 && kept < total, "{kept} of {total}");
    let (s, f) = run(&opts);
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(counts(&s), (kept, 0, total - kept));
}

#[test]
fn cli_manifest_flags() {
    let lib = generate(Generation::V1_137, 20, false);
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let m = dir.path().join("m.redb");
    let scan_cli = |extra: &[&str]| {
        let out = std::process::Command::new(binary())
            .arg("scan")
            .args(library_flags(&lib))
            .args(["--as-user", &lib.truth.as_user, "--format", "jsonl"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ms = m.to_str().unwrap();
    let summary = |stdout: &str| -> serde_json::Value {
        serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
    };
    let (code, out, err) = scan_cli(&["--level", "quick", "--manifest", ms]);
    assert_eq!(code, Some(0), "{err}");
    let first = summary(&out);
    assert_eq!(first["manifest_hits"], 0);
    let read = first["manifest_new"].as_u64().unwrap();
    assert!(read > 0);
    let (code, out, err) = scan_cli(&["--level", "quick", "--manifest", ms]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(summary(&out)["manifest_hits"], read);
    let (code, out, err) = scan_cli(&["--level", "quick", "--manifest", ms, "--verify-manifest"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(summary(&out)["manifest_rereads"], read);

    // Clear errors, exit 2, no panic.
    let (code, _, err) = scan_cli(&["--level", "quick", "--verify-manifest"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--manifest"), "{err}");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "hello").unwrap();
    let (code, _, err) = scan_cli(&["--level", "quick", "--manifest", junk.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not an immich-integrity manifest"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(&junk).unwrap(), b"hello");
}

/// Levels follow cost (`exists` < `quick` < `hash` < `full`): a file verified at `full` was
/// also hashed, so a `hash` run trusts it; a file verified at `hash` was never decoded, so a
/// `full` run reads it again.
#[test]
fn a_file_verified_at_full_is_verified_at_hash_not_the_other_way_round() {
    let lib = generate(Generation::V3_2, 20, false);
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let mut opts = options(&lib.truth);
    opts.manifest = Some(dir.path().join("m.redb"));
    opts.level = Level::Hash;
    let (s1, f1) = run(&opts);
    assert!(f1.is_empty(), "{f1:#?}");
    let (_, _, read) = counts(&s1);
    assert!(read > 20);
    opts.level = Level::Full;
    assert_eq!(
        counts(&run(&opts).0),
        (0, read, 0),
        "hash entries are shallower"
    );
    opts.level = Level::Hash;
    assert_eq!(
        counts(&run(&opts).0),
        (read, 0, 0),
        "full entries vouch for hash"
    );
    opts.level = Level::Quick;
    assert_eq!(counts(&run(&opts).0), (read, 0, 0));
}
