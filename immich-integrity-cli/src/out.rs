//! Writing to stdout and stderr when the reader may have gone away (`| head -1`).

use std::io::{self, Write};

/// Is this the error of a write to a pipe whose reader closed it (`EPIPE`)?
pub(crate) fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Writes `args` (and a newline) to `w`. A closed pipe drops the text quietly (the command
/// goes on and ends with its usual status); any other error is reported on stderr and exits 2.
pub(crate) fn line(w: &mut dyn Write, args: std::fmt::Arguments<'_>, newline: bool) {
    let r = w
        .write_fmt(args)
        .and_then(|_| if newline { w.write_all(b"\n") } else { Ok(()) });
    match r {
        Ok(()) => {}
        Err(e) if is_broken_pipe(&e) => {}
        Err(e) => {
            let _ = writeln!(
                io::stderr(),
                "immich-integrity: cannot write the output: {e}"
            );
            std::process::exit(crate::exit::Exit::Failed as i32);
        }
    }
}
