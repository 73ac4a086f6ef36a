//! Text that reaches a terminal or a spreadsheet: stored paths are data from the database,
//! so they are escaped before they are shown.

use std::borrow::Cow;

/// Escapes control characters as `ls -b` does: `\e` (ESC), `\r`, `\n`, `\t`, `\\`, and every
/// other C0 control, DEL and C1 control as `\ooo` octal bytes (of its UTF-8 encoding), so a
/// stored path cannot move the cursor, rewrite a line or change the terminal's state.
/// Printable text, including non-ASCII letters, is unchanged.
pub(crate) fn esc(s: &str) -> Cow<'_, str> {
    let needs = |c: char| c == '\\' || c.is_control();
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\x1b' => out.push_str("\\e"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One CSV cell: RFC 4180 quoting (comma, quote or line break: quoted, quotes doubled), and a
/// cell a spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, tab or CR)
/// gets a leading `'` (OWASP's CSV injection advice). JSON reports keep the exact value.
pub(crate) fn csv_cell(s: &str) -> String {
    let s: Cow<'_, str> = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_like_ls_b() {
        assert_eq!(esc("/data/upload/a.jpg"), "/data/upload/a.jpg");
        assert_eq!(esc("/data/é ü.jpg"), "/data/é ü.jpg");
        assert_eq!(
            esc("a\x1b[2Jb\rc\nd\te\x07f\x7fg\u{9b}h\\i"),
            "a\\e[2Jb\\rc\\nd\\te\\007f\\177g\\302\\233h\\\\i"
        );
    }

    #[test]
    fn csv_cells_cannot_start_a_formula() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\rx"), "\"'\rx\"");
        assert_eq!(csv_cell("/data/a,b.jpg"), "\"/data/a,b.jpg\"");
        assert_eq!(csv_cell("/data/a.jpg"), "/data/a.jpg");
    }
}
