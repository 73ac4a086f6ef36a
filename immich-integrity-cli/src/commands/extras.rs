//! Hidden helper subcommands: shell completions and the man page, generated from the clap
//! definitions so they never drift from the real flags.

use clap::Command;
use std::io::{self, Write};

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, mut cmd: Command, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes the roff man page of the top-level command, or of one subcommand
/// (`immich-integrity-scan(1)`), to `out`.
pub fn man(cmd: Command, sub: Option<&str>, out: &mut dyn Write) -> io::Result<()> {
    let cmd = cmd.disable_help_subcommand(true);
    let page = match sub {
        None => cmd,
        Some(name) => {
            let Some(s) = cmd.find_subcommand(name).filter(|s| !s.is_hide_set()) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no subcommand {name:?}"),
                ));
            };
            // A one-shot command: leaking the page name is simpler than clap's `string` feature.
            let full: &'static str =
                Box::leak(format!("{}-{}", cmd.get_name(), s.get_name()).into_boxed_str());
            s.clone().name(full).version(env!("CARGO_PKG_VERSION"))
        }
    };
    clap_mangen::Man::new(page).render(out)
}
