//! Whole-file reads in blocks, through one buffer per thread, and the hashes computed from
//! them in the same pass.

use sha1::{Digest, Sha1};
use std::cell::RefCell;
use std::io::{ErrorKind, Read, Result};

/// Bytes per read (sha1sum reads 32 KiB; larger blocks only help big originals).
pub(crate) const BLOCK: usize = 256 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads `src` to its end and hands each block to `each`; returns the bytes read. The buffer
/// is allocated once per thread: a fresh zeroed MiB per file cost more than hashing the
/// thumbnail in it (a tenth of a `--level hash` scan of small files was `memset`).
pub(crate) fn for_each_block(src: &mut impl Read, mut each: impl FnMut(&[u8])) -> Result<u64> {
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        if buf.len() < BLOCK {
            buf.resize(BLOCK, 0);
        }
        let mut n = 0u64;
        loop {
            match src.read(&mut buf[..]) {
                Ok(0) => return Ok(n),
                Ok(k) => {
                    n += k as u64;
                    // Progress for the watchdog; then the read-rate limit, if any.
                    crate::fs::watch::tick();
                    crate::fs::throttle::bytes(k as u64);
                    each(&buf[..k]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    })
}

/// SHA-1 of a whole file, read through the thread's block buffer.
pub(crate) fn sha1_reader(mut f: std::fs::File) -> std::io::Result<([u8; 20], u64)> {
    let mut h = Sha1::new();
    let n = for_each_block(&mut f, |b| h.update(b))?;
    Ok((h.finalize().into(), n))
}

/// blake3 (and SHA-1 if asked) of a whole file in one pass.
pub(crate) fn digest(
    mut f: std::fs::File,
    with_sha1: bool,
) -> std::io::Result<([u8; 32], Option<[u8; 20]>, u64)> {
    let mut b3 = blake3::Hasher::new();
    let mut s1 = with_sha1.then(Sha1::new);
    let n = for_each_block(&mut f, |b| {
        b3.update(b);
        if let Some(s) = s1.as_mut() {
            s.update(b);
        }
    })?;
    Ok((
        *b3.finalize().as_bytes(),
        s1.map(|s| s.finalize().into()),
        n,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_once_in_order() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut seen = Vec::new();
            let n = for_each_block(&mut &data[..], |b| seen.extend_from_slice(b)).unwrap();
            assert_eq!(n, len as u64);
            assert_eq!(seen, data);
        }
    }
}
