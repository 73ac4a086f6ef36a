//! An external sort: records (a sort key and a value, both bytes) go into a fixed-size
//! buffer; a full buffer is sorted and written to an anonymous temp file (a run); reading
//! merges the runs. When [`MAX_RUNS`] runs of one size have piled up they are merged into one
//! run (a run of the next level, like an LSM tree's compaction), so the number of open runs,
//! and with it the read buffers of a merge, stays small whatever the number of records:
//! memory is the buffer plus at most a few times `MAX_RUNS` read buffers, and the runs can be
//! merged again as often as needed.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes of records held before a run is written. 8 MiB: at 32 MiB the buffer and its index
/// were most of `restore-test`'s peak at 1 M assets (142 MiB against 69 MiB at 10 k).
pub(crate) const RUN_BYTES: usize = 8 << 20;
/// Records held before a run is written, whatever their size: the index (12 bytes a record)
/// stays below 6 MiB even for the 16-byte keys of the untracked-file search.
const RUN_RECORDS: usize = RUN_BYTES / 16;
/// Runs of one level merged into one run of the next: a merge reads at most about this many
/// runs per level (64 KiB of buffer each), and no more files stay open.
pub(crate) const MAX_RUNS: usize = 32;

/// A sorter being filled.
pub(crate) struct Spill {
    dir: Option<std::path::PathBuf>,
    data: Vec<u8>,
    /// (start, key length, value length) of each record in `data`.
    index: Vec<(u32, u32, u32)>,
    /// The runs written so far in push order, each with its level (0: one buffer; n + 1: a
    /// merge of `max_runs` runs of level n). Levels never increase along the list, so the
    /// runs of the lowest level are always the last ones.
    runs: Vec<(File, u32)>,
    run_bytes: usize,
    run_records: usize,
    max_runs: usize,
}

impl Spill {
    /// Runs go to anonymous temp files in `dir` (default: `TMPDIR`).
    pub(crate) fn new(dir: Option<&Path>) -> Spill {
        Spill::with_limits(dir, RUN_BYTES, RUN_RECORDS, MAX_RUNS)
    }

    fn with_limits(
        dir: Option<&Path>,
        run_bytes: usize,
        run_records: usize,
        max_runs: usize,
    ) -> Spill {
        Spill {
            dir: dir.map(Path::to_path_buf),
            data: Vec::new(),
            index: Vec::new(),
            runs: Vec::new(),
            run_bytes,
            run_records,
            max_runs: max_runs.max(2),
        }
    }

    fn temp(&self) -> io::Result<File> {
        match &self.dir {
            Some(d) => tempfile::tempfile_in(d),
            None => tempfile::tempfile(),
        }
    }

    /// Adds one record.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let full = self.data.len() + key.len() + value.len() > self.run_bytes
            || self.index.len() >= self.run_records;
        if full && !self.index.is_empty() {
            self.flush()?;
        }
        let start = self.data.len() as u32;
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        self.index
            .push((start, key.len() as u32, value.len() as u32));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let data = &self.data;
        let key = |&(s, k, _): &(u32, u32, u32)| &data[s as usize..(s + k) as usize];
        self.index.sort_by(|a, b| key(a).cmp(key(b)));
        let mut w = BufWriter::with_capacity(1 << 16, self.temp()?);
        for &(s, k, v) in &self.index {
            let s = s as usize;
            write_record(
                &mut w,
                &data[s..s + k as usize],
                &data[s + k as usize..][..v as usize],
            )?;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        self.runs.push((file, 0));
        self.data.clear();
        self.index.clear();
        self.compact()
    }

    /// While the last `max_runs` runs share a level, merges them into one run of the next.
    fn compact(&mut self) -> io::Result<()> {
        loop {
            let n = self.runs.len();
            if n < self.max_runs {
                return Ok(());
            }
            let level = self.runs[n - 1].1;
            if self.runs[n - self.max_runs..].iter().any(|r| r.1 != level) {
                return Ok(());
            }
            let group = Sorted {
                runs: self.runs.drain(n - self.max_runs..).map(|r| r.0).collect(),
            };
            let mut m = group.merge()?;
            let mut w = BufWriter::with_capacity(1 << 16, self.temp()?);
            while let Some((k, v)) = m.next_record()? {
                write_record(&mut w, &k, &v)?;
            }
            let file = w.into_inner().map_err(|e| e.into_error())?;
            self.runs.push((file, level + 1));
        }
    }

    /// Writes the last run; the records can then be read in key order, any number of times.
    pub(crate) fn finish(mut self) -> io::Result<Sorted> {
        if !self.index.is_empty() || self.runs.is_empty() {
            self.flush()?;
        }
        self.data = Vec::new();
        Ok(Sorted {
            runs: self.runs.into_iter().map(|r| r.0).collect(),
        })
    }
}

/// One record as a run holds it: the key's and the value's lengths, then their bytes.
fn write_record(w: &mut impl Write, key: &[u8], value: &[u8]) -> io::Result<()> {
    w.write_all(&(key.len() as u32).to_le_bytes())?;
    w.write_all(&(value.len() as u32).to_le_bytes())?;
    w.write_all(key)?;
    w.write_all(value)
}

/// Sorted runs on disk.
pub(crate) struct Sorted {
    runs: Vec<File>,
}

impl Sorted {
    /// A new merge of every run, from the first record.
    pub(crate) fn merge(&self) -> io::Result<Merge> {
        let mut readers = Vec::with_capacity(self.runs.len());
        for f in &self.runs {
            let mut f = f.try_clone()?;
            f.seek(SeekFrom::Start(0))?;
            readers.push(BufReader::with_capacity(1 << 16, f));
        }
        let mut m = Merge {
            readers,
            heap: BinaryHeap::new(),
        };
        for i in 0..m.readers.len() {
            m.refill(i)?;
        }
        Ok(m)
    }
}

/// One record of a merge.
#[derive(PartialEq, Eq)]
struct Head {
    key: Vec<u8>,
    value: Vec<u8>,
    run: usize,
}

impl Ord for Head {
    // Reversed: the heap's top is the smallest key (ties: the earlier run, so equal keys keep
    // the order they were pushed in).
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.key.cmp(&self.key).then(o.run.cmp(&self.run))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// Yields `(key, value)` in key order.
pub(crate) struct Merge {
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Head>,
}

impl Merge {
    fn refill(&mut self, run: usize) -> io::Result<()> {
        let r = &mut self.readers[run];
        let mut lens = [0u8; 8];
        match r.read_exact(&mut lens) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let k = u32::from_le_bytes(lens[..4].try_into().expect("4")) as usize;
        let v = u32::from_le_bytes(lens[4..].try_into().expect("4")) as usize;
        let mut key = vec![0; k];
        r.read_exact(&mut key)?;
        let mut value = vec![0; v];
        r.read_exact(&mut value)?;
        self.heap.push(Head { key, value, run });
        Ok(())
    }

    /// The next record, or `None` at the end.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(h) = self.heap.pop() else {
            return Ok(None);
        };
        self.refill(h.run)?;
        Ok(Some((h.key, h.value)))
    }
}

/// A record's fields: each one a length (`u32::MAX` for none) and its bytes.
#[derive(Default)]
pub(crate) struct Fields(pub(crate) Vec<u8>);

impl Fields {
    pub(crate) fn put(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            None => self.0.extend_from_slice(&u32::MAX.to_le_bytes()),
            Some(b) => {
                self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
                self.0.extend_from_slice(b);
            }
        }
        self
    }

    /// Reads the fields written by [`Fields::put`], in order.
    pub(crate) fn read(mut b: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        while b.len() >= 4 {
            let n = u32::from_le_bytes(b[..4].try_into().expect("4"));
            b = &b[4..];
            if n == u32::MAX {
                out.push(None);
            } else {
                let n = (n as usize).min(b.len());
                out.push(Some(b[..n].to_vec()));
                b = &b[n..];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_many_runs_in_key_order_and_again() {
        let mut s = Spill::new(None);
        // Big values force several runs.
        let big = vec![7u8; RUN_BYTES / 5];
        let keys = [5u8, 3, 9, 1, 3, 8, 2, 7, 4, 6, 0];
        for k in keys {
            s.push(&[k], &big).unwrap();
        }
        let sorted = s.finish().unwrap();
        assert!(sorted.runs.len() > 1);
        for _ in 0..2 {
            let mut m = sorted.merge().unwrap();
            let mut got = Vec::new();
            while let Some((k, _)) = m.next_record().unwrap() {
                got.push(k[0]);
            }
            assert_eq!(got, vec![0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9]);
        }
    }

    #[test]
    fn piled_up_runs_are_merged_into_few_in_order_and_stable() {
        // One record per run and three runs per level: 40 records make levels 3, 2, 1, 0.
        let mut s = Spill::with_limits(None, 1, 1, 3);
        let keys: Vec<u8> = (0..40u32).map(|i| ((i * 7) % 10) as u8).collect();
        for (i, k) in keys.iter().enumerate() {
            s.push(&[*k], &[i as u8]).unwrap();
            assert!(s.runs.len() <= 4 * 2, "{} runs", s.runs.len());
        }
        let sorted = s.finish().unwrap();
        assert!(sorted.runs.len() <= 8, "{} runs", sorted.runs.len());
        let mut m = sorted.merge().unwrap();
        let mut got = Vec::new();
        while let Some((k, v)) = m.next_record().unwrap() {
            got.push((k[0], v[0]));
        }
        // Key order, and equal keys in the order they were pushed.
        let mut want: Vec<(u8, u8)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i as u8))
            .collect();
        want.sort_by_key(|&(k, _)| k);
        assert_eq!(got, want);
    }

    #[test]
    fn fields_round_trip() {
        let mut f = Fields::default();
        f.put(Some(b"a")).put(None).put(Some(b""));
        assert_eq!(
            Fields::read(&f.0),
            vec![Some(b"a".to_vec()), None, Some(Vec::new())]
        );
    }
}
