//! Decode cost per format at the `full` level, in ms per megapixel: one photo-sized image per
//! format (JPEG, PNG, WebP, HEIC, 10-bit AVIF, JPEG XL, DNG), encoded once with the same
//! encoders the fixtures use (`heif-enc`, `avifenc`, `cjxl`; the DNG written directly), then
//! decoded through `decode::decode_file` a few times; the median is reported.
//!
//! `cargo bench --bench formats` (SIDE=2048 by default: a 2048 x 1536 image, 3.1 MP).
//! `benches/scale.sh` runs it and puts its table beside the scan figures.

use immich_integrity::decode::{decode_file, DecodeLimits, Decoded};
use immich_integrity::formats::{detect, Format};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/setup.sh installs it)"));
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let w: u32 = std::env::var("SIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2048);
    let h = w * 3 / 4;
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // A photo-like pattern: gradients and texture, so no encoder gets it for free.
    let img = image::ImageBuffer::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 27;
        image::Rgb([
            (x / 8 + n) as u8,
            (y / 6 + 2 * n) as u8,
            ((x + y) / 11) as u8,
        ])
    });
    let dynimg = image::DynamicImage::ImageRgb8(img);
    dynimg.save(p("a.png")).unwrap();
    dynimg.save(p("a.jpg")).unwrap();
    dynimg.save(p("a.webp")).unwrap();
    let img16 = image::DynamicImage::ImageRgb16(dynimg.to_rgb16());
    img16.save(p("a16.png")).unwrap();
    run("heif-enc", &["-q", "60", "-o", &p("a.heic"), &p("a.png")]);
    run(
        "avifenc",
        &[
            "-s",
            "8",
            "-d",
            "10",
            "--cicp",
            "9/16/9",
            &p("a16.png"),
            &p("a.avif"),
        ],
    );
    run("cjxl", &[&p("a.png"), &p("a.jxl"), "-q", "90", "--quiet"]);
    std::fs::write(
        p("a.dng"),
        immich_fixtures::phones::dng_sized(w, h, "bench", None),
    )
    .unwrap();
    let limits = DecodeLimits::default();
    let mp = f64::from(w) * f64::from(h) / 1e6;
    println!(
        "{:<6} {:>10} {:>10} {:>10}",
        "format", "bytes", "ms", "ms_per_MP"
    );
    for name in [
        "a.jpg", "a.png", "a.webp", "a.heic", "a.avif", "a.jxl", "a.dng",
    ] {
        let path = Path::new(&p(name)).to_path_buf();
        let bytes = std::fs::read(&path).unwrap();
        let format = match detect(&bytes) {
            Format::Tiff => Format::Raw,
            f => f,
        };
        let f = std::fs::File::open(&path).unwrap();
        let mut times = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let r = decode_file(&f, bytes.len() as u64, format, &limits);
            times.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(
                matches!(r.outcome, Decoded::Ok(_)),
                "{name}: {:?}",
                r.outcome
            );
        }
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        println!(
            "{:<6} {:>10} {:>10.1} {:>10.1}",
            format.name(),
            bytes.len(),
            ms,
            ms / mp
        );
    }
    println!("({w}x{h} = {mp:.1} MP, median of {reps} decodes, one thread)");
}
