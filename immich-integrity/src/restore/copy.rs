//! PostgreSQL's `COPY ... FROM stdin` text format, as `pg_dump` writes it: the header line
//! (`COPY public."user" (id, "ownerId", ...) FROM stdin;`) and the data lines (fields split
//! by tabs, `\N` for NULL, backslash escapes), plus the text forms of the few column types
//! the tool reads (bytea, boolean, arrays).

/// A `COPY` header: the table (without its schema) and its column names, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyHeader {
    pub(crate) schema: String,
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
}

/// Reads one SQL identifier (quoted or not) from the start of `s`; returns it and the rest.
pub(crate) fn ident(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if rest[i + 1..].starts_with('"') {
                    out.push('"');
                    chars.next();
                } else {
                    return Some((out, &rest[i + 1..]));
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_lowercase(), &s[end..]))
    }
}

/// Parses `COPY schema.table (col, ...) FROM stdin;`; `None` for any other line.
pub(crate) fn parse_header(line: &str) -> Option<CopyHeader> {
    let rest = line.strip_prefix("COPY ")?;
    let (first, rest) = ident(rest)?;
    let (schema, table, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let (t, r) = ident(r)?;
            (first, t, r)
        }
        None => ("public".to_string(), first, rest),
    };
    let mut rest = rest.trim_start().strip_prefix('(')?;
    let mut columns = Vec::new();
    loop {
        let (c, r) = ident(rest)?;
        columns.push(c);
        let r = r.trim_start();
        if let Some(r) = r.strip_prefix(',') {
            rest = r;
        } else {
            rest = r.strip_prefix(')')?;
            break;
        }
    }
    rest.trim().starts_with("FROM stdin").then_some(CopyHeader {
        schema,
        table,
        columns,
    })
}

/// Splits one data line into its fields, each decoded to bytes (`None` for `\N`).
pub(crate) fn fields(line: &[u8]) -> Vec<Option<Vec<u8>>> {
    line.split(|&b| b == b'\t')
        .map(|f| if f == b"\\N" { None } else { Some(unescape(f)) })
        .collect()
}

/// Undoes COPY's backslash escapes: `\b \f \n \r \t \v`, `\\`, octal `\ooo`, hex `\xHH`;
/// a backslash before any other character stands for that character.
pub(crate) fn unescape(f: &[u8]) -> Vec<u8> {
    if !f.contains(&b'\\') {
        return f.to_vec();
    }
    let mut out = Vec::with_capacity(f.len());
    let mut i = 0;
    while i < f.len() {
        let c = f[i];
        if c != b'\\' || i + 1 == f.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let n = f[i + 1];
        i += 2;
        match n {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(n - b'0');
                for _ in 0..2 {
                    match f.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' if f.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match f.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// A `bytea` in its text form: hex (`\x0a1b...`) or the old escape format.
pub(crate) fn bytea(v: &[u8]) -> Option<Vec<u8>> {
    if let Some(h) = v.strip_prefix(b"\\x") {
        return hex::decode(h).ok();
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'\\' {
            if v.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else {
                let d = v.get(i + 1..i + 4)?;
                let s = std::str::from_utf8(d).ok()?;
                out.push(u8::from_str_radix(s, 8).ok()?);
                i += 4;
            }
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `t`/`f`.
pub(crate) fn boolean(v: &[u8]) -> bool {
    matches!(v, b"t" | b"true")
}

/// A one-dimensional text array literal (`{a,"b c",NULL}`); NULL items are left out.
pub(crate) fn text_array(v: &str) -> Vec<String> {
    let Some(inner) = v.trim().strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut was_quoted, mut chars) = (false, false, inner.chars());
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '\\' if quoted => cur.extend(chars.next()),
            ',' if !quoted => {
                if was_quoted || cur != "NULL" {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if !inner.is_empty() && (was_quoted || cur != "NULL") {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_the_table_and_unquoted_columns() {
        let h =
            parse_header(r#"COPY public."user" (id, "profileImagePath", "odd""name") FROM stdin;"#)
                .unwrap();
        assert_eq!(h.table, "user");
        assert_eq!(h.columns, vec!["id", "profileImagePath", "odd\"name"]);
        let h = parse_header("COPY public.asset_file (id, \"assetId\", type, path) FROM stdin;")
            .unwrap();
        assert_eq!(
            (h.schema.as_str(), h.table.as_str()),
            ("public", "asset_file")
        );
        assert!(parse_header("COPY public.x (a) TO stdout;").is_none());
        assert!(parse_header("CREATE TABLE public.asset (").is_none());
    }

    #[test]
    fn fields_decode_every_escape() {
        let line = br"a\tb	\N	c\\d	\101\x42\x4	x\ny\rz\\N	\q";
        let f = fields(line);
        assert_eq!(f[0].as_deref(), Some(&b"a\tb"[..]));
        assert_eq!(f[1], None);
        assert_eq!(f[2].as_deref(), Some(&br"c\d"[..]));
        assert_eq!(f[3].as_deref(), Some(&b"AB\x04"[..]));
        assert_eq!(f[4].as_deref(), Some(&b"x\ny\rz\\N"[..]));
        assert_eq!(f[5].as_deref(), Some(&b"q"[..]));
        // A path that is not UTF-8 comes out as its bytes.
        assert_eq!(unescape(br"\377.jpg"), b"\xff.jpg");
    }

    #[test]
    fn bytea_booleans_and_arrays() {
        assert_eq!(bytea(br"\x0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(bytea(br"a\\b\001"), Some(b"a\\b\x01".to_vec()));
        assert!(boolean(b"t") && !boolean(b"f"));
        assert_eq!(
            text_array(r#"{/mnt/a,"/mnt/b c","x\"y",NULL}"#),
            vec!["/mnt/a", "/mnt/b c", "x\"y"]
        );
        assert!(text_array("{}").is_empty());
    }
}
