//! Decoding many videos must not grow memory: each probe's packets are released. (ffmpeg-next's
//! `Packet::read` does not unreference what the packet held, so a reused packet leaked every
//! buffer it was given: ~4 KB per small video, hundreds of MiB over a large library.)
//! Alone in its file, so no other test shares the process whose memory is measured.

use immich_integrity::decode::{decode_file, DecodeLimits, Decoded};
use immich_integrity::formats::Format;

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

#[test]
fn probing_thousands_of_videos_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let bytes = immich_fixtures::media::mp4("leak-check").expect("ffmpeg makes the test MP4");
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let limits = DecodeLimits::default();
    let probe = || {
        let r = decode_file(&file, bytes.len() as u64, Format::Mp4, &limits);
        assert!(matches!(r.outcome, Decoded::Ok(_)), "{:?}", r.outcome);
        r.bytes_read
    };
    // Warm up: FFmpeg's one-time tables and the allocator's arenas.
    for _ in 0..300 {
        probe();
    }
    let before = vm_rss_kib();
    let mut read = 0;
    for _ in 0..3000 {
        read += probe();
    }
    let grown = vm_rss_kib().saturating_sub(before);
    // The leak kept every packet (measured: RSS grew by twice the bytes read). Allow a
    // quarter of what was read, at most 4 MiB.
    let allowed = (read / 1024 / 4).min(4096);
    assert!(
        grown <= allowed,
        "RSS grew by {grown} KiB over 3000 probes that read {} KiB of packets (allowed {allowed} KiB)",
        read / 1024
    );
}
