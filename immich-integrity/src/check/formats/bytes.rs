//! Small byte helpers that never panic, and the bounded reader with its head and tail caches.

use super::*;

pub(super) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

pub(super) fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub(super) fn be64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

pub(super) fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[derive(Clone, Copy)]
pub(super) struct Endian {
    pub(super) little: bool,
}

impl Endian {
    pub(super) fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let s = b.get(at..at.checked_add(2)?)?;
        Some(if self.little {
            u16::from_le_bytes([s[0], s[1]])
        } else {
            u16::from_be_bytes([s[0], s[1]])
        })
    }
    pub(super) fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let s = b.get(at..at.checked_add(4)?)?;
        let a = [s[0], s[1], s[2], s[3]];
        Some(if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }
    pub(super) fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let s = b.get(at..at.checked_add(8)?)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(if self.little {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    }
}

pub(super) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

pub(super) fn fourcc(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).rposition(|w| w == needle)
}

pub(super) fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

pub(super) struct Src<'a, R: ?Sized> {
    pub(super) r: &'a R,
    pub(super) size: u64,
    pub(super) read: u64,
    /// The file ended (read returned 0) at this offset, before `size`.
    pub(super) short_at: Option<u64>,
    pub(super) budget_exhausted: bool,
    pub(super) head: Vec<u8>,
    pub(super) tail: Vec<u8>,
    pub(super) tail_off: u64,
}

impl<'a, R: ReadAt + ?Sized> Src<'a, R> {
    pub(super) fn new(r: &'a R, size: u64) -> Self {
        Src {
            r,
            size,
            read: 0,
            short_at: None,
            budget_exhausted: false,
            head: Vec::new(),
            tail: Vec::new(),
            tail_off: 0,
        }
    }

    /// Read `len` bytes at `off` (clamped to the file size, to `MAX_CHUNK` and to the read
    /// budget). A shorter result means end of file.
    pub(super) fn raw_read(&mut self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let remaining_budget = MAX_QUICK_READ.saturating_sub(self.read);
        let want = u64_of(len.min(MAX_CHUNK)).min(self.size.saturating_sub(off));
        let len_u = want.min(remaining_budget);
        if len_u < want {
            self.budget_exhausted = true;
        }
        let len = usize::try_from(len_u).unwrap_or(0);
        let mut buf = vec![0u8; len];
        let mut filled = 0usize;
        let mut interrupts = 0;
        while filled < len {
            let Some(pos) = off.checked_add(u64_of(filled)) else {
                break;
            };
            match self.r.read_at(&mut buf[filled..], pos) {
                Ok(0) => break,
                Ok(n) => filled += n.min(len - filled),
                Err(e) if e.kind() == io::ErrorKind::Interrupted && interrupts < 64 => {
                    interrupts += 1;
                }
                Err(e) => return Err(e),
            }
        }
        if filled < len {
            let at = off.saturating_add(u64_of(filled));
            self.short_at = Some(self.short_at.map_or(at, |s| s.min(at)));
        }
        buf.truncate(filled);
        self.read += u64_of(filled);
        Ok(buf)
    }

    pub(super) fn load(&mut self) -> io::Result<()> {
        self.head = self.raw_read(0, usize::try_from(HEAD_LEN).unwrap_or(MAX_CHUNK))?;
        let head_len = u64_of(self.head.len());
        if self.size <= head_len {
            self.tail = self.head.clone();
            self.tail_off = 0;
        } else {
            let start = self.size.saturating_sub(TAIL_LEN).max(head_len);
            let len = usize::try_from(self.size - start).unwrap_or(MAX_CHUNK);
            self.tail = self.raw_read(start, len)?;
            self.tail_off = start;
        }
        Ok(())
    }

    /// `len` bytes at `off`, served from the caches when possible.
    pub(super) fn bytes(&mut self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = off.saturating_add(u64_of(len)).min(self.size);
        if end <= off {
            return Ok(Vec::new());
        }
        if end <= u64_of(self.head.len()) {
            return Ok(self.head[off as usize..end as usize].to_vec());
        }
        let tail_end = self.tail_off + u64_of(self.tail.len());
        if off >= self.tail_off && end <= tail_end {
            let a = (off - self.tail_off) as usize;
            let b = (end - self.tail_off) as usize;
            return Ok(self.tail[a..b].to_vec());
        }
        self.raw_read(off, len)
    }

    /// Number of zero bytes at the very end of the file (within the tail window).
    pub(super) fn zero_tail(&self) -> u64 {
        if u64_of(self.tail.len()) + self.tail_off != self.size {
            return 0; // short read: the tail is not the file's end
        }
        u64_of(self.tail.iter().rev().take_while(|&&b| b == 0).count())
    }

    /// Whether the whole tail window is zero bytes (so the run may be longer).
    pub(super) fn zero_tail_saturated(&self) -> bool {
        !self.tail.is_empty() && self.zero_tail() == u64_of(self.tail.len())
    }

    pub(super) fn zero_tail_text(&self) -> String {
        let z = self.zero_tail();
        if self.zero_tail_saturated() && self.size > z {
            format!("zero-filled tail of at least {z} bytes")
        } else {
            format!("zero-filled tail of {z} bytes")
        }
    }

    /// `Truncated` for a missing end marker, refined when the file ends in zero bytes.
    pub(super) fn end_missing(&self, fmt: &str, msg: String) -> Verdict {
        if self.zero_tail() >= ZERO_TAIL_MIN {
            Verdict::Truncated(format!("{fmt}: {}; {msg}", self.zero_tail_text()))
        } else {
            Verdict::Truncated(format!("{fmt}: {msg}"))
        }
    }

    pub(super) fn last_bytes(&self, n: usize) -> &[u8] {
        let t = &self.tail;
        &t[t.len().saturating_sub(n)..]
    }
}
