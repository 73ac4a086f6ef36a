//! Micro-benchmarks of the hot pieces of a scan, without a database:
//! - `decode`: turning one page of decoded asset columns (2000 rows, with the
//!   `"type:edited:path"` array of `asset_file`) into `AssetRow`s;
//! - `pathmap`: mapping stored paths (media root, stale prefix, external library, unmapped);
//! - `check_row`: classifying rows against a small generated tree (`exists` and `quick`,
//!   healthy rows and rows whose original is missing);
//! - `quick`: `formats::check` on in-memory JPEG, PNG, WebP and MP4 files, whole and truncated.
//!
//! `cargo bench --bench hot -- --quick` for a fast pass; add a filter (`-- pathmap`) for one
//! group. The scale benchmark (`benches/scale.sh`) measures whole scans.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use immich_fixtures::media;
use immich_integrity::benchkit::{AssetColumns, RowChecker};
use immich_integrity::{formats, AssetRow, FileKind, Level, PathMap};
use std::path::Path;

const USERS: [&str; 3] = [
    "61644a25-da5a-4317-94e2-3bc1eca8c766",
    "c9fba417-a2d8-49ed-886c-0f3f03f94ec8",
    "0f0c2cba-45e4-4b5b-8f5c-1a0c3e2d9b77",
];

/// A deterministic asset id (hex, UUID-shaped) for row `i`.
fn asset_id(i: u32) -> String {
    let h = i.wrapping_mul(2_654_435_761);
    format!(
        "{h:08x}-{:04x}-4000-8000-{:012x}",
        i & 0xffff,
        u64::from(i) * 7919
    )
}

/// The columns of row `i` as the v2.6 page query returns them.
fn columns(i: u32) -> AssetColumns {
    let id = asset_id(i);
    let user = USERS[i as usize % USERS.len()];
    let (a, b) = (&id[0..2], &id[2..4]);
    AssetColumns {
        id: id.clone(),
        owner: user.to_string(),
        library: None,
        asset_type: Some("IMAGE".into()),
        checksum: Some(vec![0x5a; 20]),
        path_checksum: Some(false),
        size: Some(4096),
        trashed: false,
        original: Some(format!("/data/upload/{user}/{a}/{b}/{id}.jpg")),
        files: Some(vec![
            format!("preview:0:/data/thumbs/{user}/{a}/{b}/{id}_preview.jpeg"),
            format!("thumbnail:0:/data/thumbs/{user}/{a}/{b}/{id}_thumbnail.webp"),
        ]),
        ..AssetColumns::default()
    }
}

fn decode(c: &mut Criterion) {
    let page: Vec<AssetColumns> = (0..2000).map(columns).collect();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(page.len() as u64));
    g.bench_function("page_2000_rows", |b| {
        b.iter_batched(
            || page.clone(),
            |page| {
                page.into_iter()
                    .map(|cols| cols.into_row(&[]))
                    .collect::<Vec<AssetRow>>()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("page_2000_rows_kind_filter", |b| {
        b.iter_batched(
            || page.clone(),
            |page| {
                page.into_iter()
                    .map(|cols| cols.into_row(&[FileKind::Original]))
                    .collect::<Vec<AssetRow>>()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn pathmap(c: &mut Criterion) {
    let mut map = PathMap::new();
    map.add_media_root("/data", "/srv/immich/library");
    map.add("/mnt/external/photos", "/srv/photos", false);
    let paths: Vec<String> = (0..1000u32)
        .map(|i| {
            let row = columns(i);
            match i % 10 {
                // Most rows: the active media root.
                0..=6 => row.original.unwrap_or_default(),
                // A stale spelling (rows written before a media-location move).
                7 => format!("upload/upload/{}/{}.jpg", USERS[0], row.id),
                8 => format!("/mnt/external/photos/2023/2023-09-27/IMG_{i:04}.jpg"),
                _ => format!("/somewhere/else/{}.jpg", row.id),
            }
        })
        .collect();
    let mut g = c.benchmark_group("pathmap");
    g.throughput(Throughput::Elements(paths.len() as u64));
    g.bench_function("map_1000_paths", |b| {
        b.iter(|| {
            for p in &paths {
                black_box(map.map(black_box(p)));
            }
        })
    });
    g.finish();
}

/// A media root with `.immich` markers and `n` assets (original, preview, thumbnail), and the
/// rows that reference them. Rows with `i % 10 == 9` have no original on disk.
fn tree(root: &Path, n: u32) -> Vec<AssetRow> {
    for f in [
        "upload",
        "thumbs",
        "library",
        "encoded-video",
        "profile",
        "backups",
    ] {
        media::make_dir(&root.join(f)).unwrap();
        media::write_file(&root.join(f).join(".immich"), b"1").unwrap();
    }
    let jpeg = media::jpeg(64, 48, b"bench", "original").unwrap();
    let preview = media::jpeg(32, 24, b"bench", "preview").unwrap();
    let thumb = media::webp(16, 12, b"bench").unwrap();
    (0..n)
        .map(|i| {
            let row = columns(i).into_row(&[]);
            for f in &row.files {
                if f.kind == FileKind::Original && i % 10 == 9 {
                    continue;
                }
                let host = root.join(f.db_path.strip_prefix("/data/").unwrap());
                std::fs::create_dir_all(host.parent().unwrap()).unwrap();
                let bytes = match f.kind {
                    FileKind::Original => &jpeg,
                    FileKind::Preview => &preview,
                    _ => &thumb,
                };
                media::write_file(&host, bytes).unwrap();
            }
            AssetRow {
                original_size: Some(jpeg.len() as u64),
                ..row
            }
        })
        .collect()
}

fn check_row(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rows = tree(dir.path(), 500);
    let (healthy, broken): (Vec<&AssetRow>, Vec<&AssetRow>) =
        rows.iter().partition(|r| rows_index(r) % 10 != 9);
    let mut g = c.benchmark_group("check_row");
    for level in [Level::Exists, Level::Quick] {
        let mut map = PathMap::new();
        map.add_media_root("/data", dir.path());
        let checker = RowChecker::new(map, level, None).unwrap();
        g.throughput(Throughput::Elements(healthy.len() as u64));
        g.bench_function(format!("{level:?}_healthy_rows").to_lowercase(), |b| {
            b.iter(|| {
                for r in &healthy {
                    assert!(checker.check_row(r).is_empty());
                }
            })
        });
        g.throughput(Throughput::Elements(broken.len() as u64));
        g.bench_function(format!("{level:?}_missing_original").to_lowercase(), |b| {
            b.iter(|| {
                for r in &broken {
                    assert_eq!(checker.check_row(r).len(), 1);
                }
            })
        });
    }
    g.finish();
}

/// The `i` a row of `tree` was made from (its id's fourth group is `i * 7919`).
fn rows_index(r: &AssetRow) -> u64 {
    let last = r.id.rsplit('-').next().unwrap_or("0");
    u64::from_str_radix(last, 16).unwrap_or(0) / 7919
}

fn quick(c: &mut Criterion) {
    let samples: Vec<(&str, Vec<u8>)> = vec![
        ("jpeg", media::jpeg(640, 480, b"quick", "q").unwrap()),
        ("png", media::png(320, 240, b"quick").unwrap()),
        ("webp", media::webp(320, 240, b"quick").unwrap()),
        ("mp4", media::mp4("quick").unwrap()),
    ];
    let mut g = c.benchmark_group("quick");
    for (ext, bytes) in &samples {
        let whole = formats::check(bytes.as_slice(), bytes.len() as u64, Some(ext)).unwrap();
        assert!(
            matches!(whole.verdict, formats::Verdict::Ok),
            "{ext}: {:?}",
            whole.verdict
        );
        // Per file: an in-memory check reads no bytes, so a byte rate would mean nothing.
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{ext}_whole"), |b| {
            b.iter(|| formats::check(black_box(bytes.as_slice()), bytes.len() as u64, Some(ext)))
        });
        let cut = &bytes[..bytes.len() * 2 / 3];
        g.bench_function(format!("{ext}_truncated"), |b| {
            b.iter(|| formats::check(black_box(cut), cut.len() as u64, Some(ext)))
        });
    }
    g.finish();
}

criterion_group!(benches, decode, pathmap, check_row, quick);
criterion_main!(benches);
