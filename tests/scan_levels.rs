//! Every level finds exactly its ground truth: content faults (truncated, bit-flipped, bomb, no
//! moov, ...) appear from the level that can see them, with the fault expected there, on every
//! schema generation. Plus: a decoder panic is a finding, a decompression bomb stays small, and
//! the video probe's deadline and packet budget hold.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::decode::{self, DecodeLimits, Decoded};
use immich_integrity::formats::Format;
use immich_integrity::{scan, Fault, FileKind, Finding, Level};
use std::time::Duration;

const LEVELS: [Level; 4] = [Level::Exists, Level::Quick, Level::Hash, Level::Full];

fn scan_at(lib: &Lib, level: Level) -> (Vec<Finding>, immich_integrity::Summary) {
    let mut opts = options(&lib.truth);
    opts.level = level;
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&opts, &mut findings).unwrap();
    (findings, summary)
}

fn detail_of<'a>(findings: &'a [Finding], truth: &immich_fixtures::TruthFault) -> &'a str {
    findings
        .iter()
        .find(|f| {
            f.asset_id == truth.asset_id && f.file.map(|k| k.as_str()) == truth.file.as_deref()
        })
        .map(|f| f.detail.as_str())
        .unwrap_or("")
}

fn levels_match_truth(generation: Generation) {
    let lib = generate_with_content_faults(generation, 40);
    let truth = &lib.truth;
    let deeper = |l: &str| truth.faults.iter().filter(|t| t.level == l).count();
    assert_eq!(
        (deeper("quick"), deeper("full"), deeper("hash")),
        (10, 9, 1),
        "the generator injects the content faults"
    );
    for level in LEVELS {
        let (findings, summary) = scan_at(&lib, level);
        let want = truth_at(truth, level);
        println!("{generation} {level:?}: {} findings", findings.len());
        assert_same(&finding_keys(&findings), &truth_keys(&want));
        if level >= Level::Full {
            // Sidecars (XMP) have no decoder: their quick verdict stands, and they are counted.
            assert!(
                summary.decode_fallbacks.get("xmp").is_some_and(|&n| n > 0),
                "{:?}",
                summary.decode_fallbacks
            );
            // The phone and camera formats have decoders now: none of them falls back, and
            // the summary says how many of each were decoded.
            for f in ["heif", "avif", "jxl", "raw"] {
                assert!(
                    !summary.decode_fallbacks.contains_key(f),
                    "{f}: {:?}",
                    summary.decode_fallbacks
                );
                assert!(
                    summary.decoded.get(f).is_some_and(|&n| n >= 2),
                    "{f}: {:?}",
                    summary.decoded
                );
            }
            for t in want.iter().filter(|t| t.level == "full") {
                let d = detail_of(&findings, t);
                let phone = ["heif:", "avif:", "jxl:", "raw:"]
                    .iter()
                    .any(|f| d.starts_with(f));
                if phone {
                    // Named by the decoder that refused it; never a panic escaping ours.
                    assert!(!d.contains("decoder panicked"), "{d}");
                } else if t.file.as_deref() == Some("original") && d.contains("png") {
                    assert!(
                        d.contains("declares 100000x100000 pixels") && d.contains("512 MiB"),
                        "{d}"
                    );
                } else {
                    assert!(d.contains("strict decoder (FFmpeg mjpeg)"), "{d}");
                }
            }
        } else {
            assert!(summary.decode_fallbacks.is_empty());
            assert!(summary.decoded.is_empty());
        }
    }
}

#[test]
fn levels_v1_112() {
    levels_match_truth(Generation::V1_112);
}

#[test]
fn levels_v1_135() {
    levels_match_truth(Generation::V1_135);
}

#[test]
fn levels_v1_137() {
    levels_match_truth(Generation::V1_137);
}

#[test]
fn levels_v2_6() {
    levels_match_truth(Generation::V2_6);
}

#[test]
fn levels_v3_0() {
    levels_match_truth(Generation::V3_0);
}

#[test]
fn levels_v3_2() {
    levels_match_truth(Generation::V3_2);
}

/// Peak resident memory of this process, KiB.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_decompression_bomb_is_refused_without_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    let limits = DecodeLimits::default();
    for side in [100_000u32, 65_535] {
        let p = dir.path().join(format!("bomb{side}.png"));
        std::fs::write(&p, immich_fixtures::content::png_bomb(side, side)).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let size = f.metadata().unwrap().len();
        assert!(size < 100, "the bomb is tiny: {size} bytes");
        let r = decode::decode_file(&f, size, Format::Png, &limits);
        match r.outcome {
            Decoded::Corrupt(d) => {
                assert!(d.contains(&format!("declares {side}x{side} pixels")), "{d}");
                assert!(d.contains("65535 px per side and 512 MiB"), "{d}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Decoding 65 535² RGBA pixels would take 16 GiB; the whole test process stayed far below.
    let peak = vm_hwm_kib();
    assert!(peak < 1024 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn the_video_probe_honours_its_deadline_and_packet_budget() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.mp4");
    std::fs::write(&p, immich_fixtures::media::mp4("deadline test").unwrap()).unwrap();
    let f = std::fs::File::open(&p).unwrap();
    let size = f.metadata().unwrap().len();
    let limits = DecodeLimits::default();
    match decode::decode_file(&f, size, Format::Mp4, &limits).outcome {
        Decoded::Ok(what) => assert_eq!(what, "h264 video, 3 frames decoded"),
        other => panic!("a healthy video decodes: {other:?}"),
    }
    // The same stream in Matroska goes through the matroska demuxer.
    let mkv = dir.path().join("v.mkv");
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&p)
        .args(["-c", "copy"])
        .arg(&mkv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = std::fs::File::open(&mkv).unwrap();
    let msize = m.metadata().unwrap().len();
    match decode::decode_file(&m, msize, Format::Matroska, &limits).outcome {
        Decoded::Ok(what) => assert_eq!(what, "h264 video, 3 frames decoded"),
        other => panic!("a healthy mkv decodes: {other:?}"),
    }
    // A deadline already passed: FFmpeg's interrupt callback aborts the open at once.
    let expired = DecodeLimits {
        timeout: Duration::ZERO,
        ..limits.clone()
    };
    match decode::decode_file(&f, size, Format::Mp4, &expired).outcome {
        Decoded::Corrupt(d) => {
            assert!(d.contains("took longer than the 0 s per-file limit"), "{d}")
        }
        other => panic!("{other:?}"),
    }
    // Too few packets allowed to reach the frames.
    let starved = DecodeLimits {
        max_packets: 1,
        ..limits
    };
    match decode::decode_file(&f, size, Format::Mp4, &starved).outcome {
        Decoded::Corrupt(d) => assert!(d.contains("within the 1 packet limit"), "{d}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_decoder_panic_becomes_a_corrupt_finding() {
    let lib = generate(Generation::V2_6, 20, false);
    let rt = runtime();
    let db = lib.truth.db_url.clone();
    let id: String = rt.block_on(async {
        let mut c = connect(&db).await;
        sqlx::query_scalar(
            "SELECT id::text FROM asset WHERE type = 'IMAGE' AND \"originalPath\" LIKE '%.jpg' \
             AND \"deletedAt\" IS NULL AND \"libraryId\" IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_one(&mut c)
        .await
        .unwrap()
    });
    // The generator tags each original with this text; only that file trips the hook.
    let marker = format!("immich-fixture original {id}");
    decode::test_hooks::panic_on_marker(Some(marker.as_bytes()));
    let (findings, _) = scan_at(&lib, Level::Full);
    decode::test_hooks::panic_on_marker(None);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f.asset_id.as_deref(), Some(id.as_str()));
    assert_eq!(f.file, Some(FileKind::Original));
    assert_eq!(f.fault, Fault::Corrupt);
    assert!(
        f.detail
            .starts_with("jpeg: decoder panicked: test hook: marker found"),
        "{}",
        f.detail
    );
    // Disarmed, the same library is clean at full.
    assert!(scan_at(&lib, Level::Full).0.is_empty());
}

/// The CLI takes `--level full` and reports through its contract (JSONL plus a summary line)
/// exactly the library's truth for that level, with exit code 1.
#[test]
fn cli_level_full_reports_the_full_truth_as_jsonl() {
    let lib = generate_with_content_faults(Generation::V2_6, 30);
    let mut args = vec!["scan".to_string()];
    args.extend(library_flags(&lib));
    args.extend(["--level", "full", "--format", "jsonl"].map(String::from));
    args.extend(["--as-user".to_string(), lib.truth.as_user.clone()]);
    let out = run_cli(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (findings, summary) = parse_jsonl(&out.stdout);
    assert_eq!(summary["level"], "full");
    assert!(summary["decode_fallbacks"]["xmp"].as_u64().unwrap_or(0) > 0);
    assert_eq!(summary["findings"].as_u64(), Some(findings.len() as u64));
    assert_same(
        &finding_keys(&findings),
        &truth_keys(&truth_at(&lib.truth, Level::Full)),
    );
}
