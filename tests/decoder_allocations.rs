//! What the new decoders (libheif for HEIC/AVIF, jxl-oxide, rawler) allocate, counted at
//! the source: this test binary defines `malloc` and its siblings itself, so every heap
//! allocation of the process goes through them — Rust's (the System allocator calls
//! `malloc`) and the C and C++ libraries' (libheif, libde265, dav1d and libstdc++'s
//! `operator new` resolve `malloc` to the executable's definition before glibc's). Fuzzed
//! inputs (real phone and camera files with bytes overwritten and cut) are decoded one at a
//! time under the fuzzing limits; for each, the largest single request and the peak of live
//! bytes above what was live before it are compared with `max_alloc`.
//! Longer run: `PROPTEST_CASES=5000 cargo test --release --test decoder_allocations`.

use immich_fixtures::phones::{file, Case};
use immich_integrity::decode::{decode_bytes, DecodeLimits, Decoded};
use immich_integrity::formats::{self, Format};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Mutex;

// glibc's own entry points, under the names it exports for exactly this use.
extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn malloc_usable_size(p: *mut c_void) -> usize;
}

/// Bytes live now, the most live since the last reset, the largest single request since then.
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Counting is on (off until the first case: the harness's own start-up is not measured).
static ON: AtomicBool = AtomicBool::new(false);

fn grew(p: *mut c_void, asked: usize) {
    if p.is_null() || !ON.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: `p` was just returned by glibc's allocator.
    let n = unsafe { malloc_usable_size(p) } as isize;
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
    LARGEST.fetch_max(asked, Ordering::Relaxed);
}

fn shrinks(p: *mut c_void) {
    if p.is_null() || !ON.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: `p` is a live block of glibc's allocator, about to be freed.
    let n = unsafe { malloc_usable_size(p) } as isize;
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

// The interposed allocator. Blocks allocated before counting began are freed while counting
// (so LIVE can dip below its start): only differences within one decode are used.

/// # Safety
/// As C's `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let p = __libc_malloc(size);
    grew(p, size);
    p
}

/// # Safety
/// As C's `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let p = __libc_calloc(n, size);
    grew(p, n.saturating_mul(size));
    p
}

/// # Safety
/// As C's `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(old: *mut c_void, size: usize) -> *mut c_void {
    let before = if old.is_null() || !ON.load(Ordering::Relaxed) {
        0
    } else {
        malloc_usable_size(old) as isize
    };
    let p = __libc_realloc(old, size);
    if !p.is_null() && ON.load(Ordering::Relaxed) {
        let after = malloc_usable_size(p) as isize;
        let now = LIVE.fetch_add(after - before, Ordering::Relaxed) + after - before;
        PEAK.fetch_max(now, Ordering::Relaxed);
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
    p
}

/// # Safety
/// As C's `free`.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    shrinks(p);
    __libc_free(p);
}

/// # Safety
/// As C's `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    let p = __libc_memalign(align, size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    grew(p, size);
    *out = p;
    0
}

/// # Safety
/// As C's `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    let p = __libc_memalign(align, size);
    grew(p, size);
    p
}

/// # Safety
/// As C's `memalign`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let p = __libc_memalign(align, size);
    grew(p, size);
    p
}

/// The limits the codec fuzzing runs under (as the library's own fuzz tests).
fn limits() -> DecodeLimits {
    DecodeLimits {
        max_dimension: 4096,
        max_alloc: 64 << 20,
        ..DecodeLimits::default()
    }
}

/// One measurement at a time: the counters are the process's, the tests run in threads.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one decode allocated: the largest single request and the peak of live bytes above
/// those live when it started.
fn measured(bytes: &[u8], format: Format, l: &DecodeLimits) -> (Decoded, usize, isize) {
    let _g = alone();
    ON.store(true, Ordering::SeqCst);
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    LARGEST.store(0, Ordering::SeqCst);
    let d = decode_bytes(bytes, format, l);
    (
        d,
        LARGEST.load(Ordering::SeqCst),
        PEAK.load(Ordering::SeqCst) - base,
    )
}

/// The healthy phone and camera files, one per decoder path.
fn samples() -> &'static [(Format, Vec<u8>)] {
    static S: std::sync::OnceLock<Vec<(Format, Vec<u8>)>> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        [
            Case::Heic,
            Case::Heic10Hdr,
            Case::HeicGrid,
            Case::Avif10Hdr,
            Case::AvifGrid,
            Case::JxlBare,
            Case::JxlContainer,
            Case::Dng,
        ]
        .into_iter()
        .map(|c| {
            let b = file(c, "memory").unwrap();
            (formats::detect(&b), b)
        })
        .collect()
    })
}

/// The most a decode may have live at once, over `max_alloc`: a decoder holds its coded
/// planes (and for a grid, one tile's) beside the output buffer `max_alloc` bounds.
const PEAK_FACTOR: isize = 3;

#[test]
fn the_counting_allocator_sees_c_libraries() {
    // A healthy HEIC decodes through libheif (C++) and libde265 (C): their buffers must show
    // up here, or the fuzz test below would prove nothing about them.
    // Each healthy sample's peak holds at least its decoded pixels, one byte each.
    for (format, bytes) in samples() {
        let (d, largest, peak) = measured(bytes, *format, &limits());
        let Decoded::Ok(what) = &d else {
            panic!("{format:?}: {d:?}")
        };
        let pixels: isize = what
            .split_whitespace()
            .find_map(|word| {
                let (w, h) = word.split_once('x')?;
                Some(w.parse::<isize>().ok()? * h.parse::<isize>().ok()?)
            })
            .unwrap_or_else(|| panic!("no WxH in {what:?}"));
        println!("{format:?} {what}: largest request {largest} B, peak {peak} B");
        assert!(
            peak >= pixels,
            "{format:?} {what}: peak {peak} B < {pixels} pixels"
        );
    }
    // A 16 MiB request made by C code through `malloc` is seen as it is.
    let _g = alone();
    ON.store(true, Ordering::SeqCst);
    LARGEST.store(0, Ordering::SeqCst);
    // SAFETY: plain malloc/free of a block we own.
    unsafe {
        let p = libc::malloc(16 << 20);
        assert!(!p.is_null());
        libc::free(p);
    }
    assert!(LARGEST.load(Ordering::SeqCst) >= 16 << 20);
}

#[test]
fn declared_bombs_allocate_nothing_large() {
    // A HEIC that declares 30 000 x 30 000 pixels is refused before any pixel buffer exists.
    let (format, heic) = &samples()[0];
    let mut bomb = heic.clone();
    let at: Vec<usize> = (0..bomb.len() - 4)
        .filter(|&i| &bomb[i..i + 4] == b"ispe")
        .collect();
    for i in at {
        bomb[i + 8..i + 16].copy_from_slice(&[0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30]);
    }
    let (d, largest, _) = measured(&bomb, *format, &DecodeLimits::default());
    assert!(matches!(d, Decoded::Corrupt(_)), "{d:?}");
    assert!(
        largest < 8 << 20,
        "largest single allocation {largest} bytes"
    );
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: cases(),
        failure_persistence: None,
        ..Default::default()
    })]

    /// Mutated and cut real files: no single request over `max_alloc`, no decode holding more
    /// than PEAK_FACTOR times it, no panic.
    #[test]
    fn no_fuzzed_decode_allocates_past_the_limit(
        which in 0usize..8,
        edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..16),
        head in proptest::bool::ANY,
        cut in proptest::option::of(proptest::num::usize::ANY),
    ) {
        let (format, sample) = &samples()[which];
        let mut bytes = sample.clone();
        let span = if head { bytes.len().min(512) } else { bytes.len() };
        for (at, v) in edits {
            bytes[at % span] = v;
        }
        if let Some(c) = cut {
            bytes.truncate(c % (bytes.len() + 1));
        }
        let l = limits();
        let (d, largest, peak) = measured(&bytes, *format, &l);
        // One line a case for the longer runs' figures (`-- --nocapture`).
        println!("fuzzed {format:?}: largest request {largest} B, peak {peak} B");
        if let Decoded::Corrupt(s) = &d {
            proptest::prop_assert!(!s.contains("panicked"), "{}", s);
        }
        proptest::prop_assert!(
            largest as u64 <= l.max_alloc,
            "{:?}: one request of {} bytes, limit {}", format, largest, l.max_alloc
        );
        proptest::prop_assert!(
            peak <= PEAK_FACTOR * l.max_alloc as isize,
            "{:?}: {} bytes live at once, limit {} x {}", format, peak, PEAK_FACTOR, l.max_alloc
        );
    }
}
