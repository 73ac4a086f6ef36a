//! XMP sidecars: an XML packet that starts and ends as one.

use super::*;

pub(super) fn check_xmp<R: ReadAt + ?Sized>(src: &Src<'_, R>) -> Verdict {
    let start = xml_start(&src.head);
    // Name of the root element: first `<name` that is not `<?` or `<!`.
    let mut root: Option<String> = None;
    let mut rest = start;
    while let Some(i) = find(rest, b"<") {
        let r = &rest[i + 1..];
        match r.first() {
            Some(b'?') | Some(b'!') => rest = r,
            Some(_) => {
                let n = r
                    .iter()
                    .take_while(|c| !matches!(c, b' ' | b'>' | b'/' | b'\t' | b'\r' | b'\n'))
                    .count();
                root = Some(String::from_utf8_lossy(&r[..n]).into_owned());
                break;
            }
            None => break,
        }
    }
    let t = &src.tail;
    let trimmed_len = t.len()
        - t.iter()
            .rev()
            .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0))
            .count();
    let t = &t[..trimmed_len];
    let mut closers: Vec<Vec<u8>> = vec![b"</x:xmpmeta>".to_vec(), b"</x:xapmeta>".to_vec()];
    if let Some(r) = root {
        closers.push(format!("</{r}>").into_bytes());
    }
    if closers.iter().any(|c| t.ends_with(c)) {
        return Verdict::Ok;
    }
    if t.ends_with(b"?>") {
        if let Some(i) = rfind(t, b"<?xpacket end=") {
            if find(&t[i..], b"?>").map(|j| i + j + 2) == Some(t.len()) {
                return Verdict::Ok;
            }
        }
    }
    src.end_missing("xmp", "document not closed".into())
}
