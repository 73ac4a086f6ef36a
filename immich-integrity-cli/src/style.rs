//! Colour and log settings shared by every subcommand.
//!
//! Precedence, strongest first: `--color always|never`, then `NO_COLOR` (any non-empty value
//! turns colour off), then whether the stream is a terminal (`--color auto`, the default).
//! So `NO_COLOR` beats `auto`, and an explicit `--color always` beats `NO_COLOR`.

use std::io::IsTerminal;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour (even through a pipe, and despite `NO_COLOR`).
    Always,
    /// Never colour.
    Never,
}

fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl ColorChoice {
    /// Whether to colour a stream that `is_terminal` says is (or is not) a terminal.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal
                    && !no_color_env()
                    && std::env::var("TERM").map_or(true, |t| t != "dumb")
            }
        }
    }
}

/// SGR colours for the table report.
#[derive(Debug, Clone, Copy)]
pub struct Paint(pub bool);

impl Paint {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    /// Faults that lose data (originals) and headings.
    pub fn red(self, s: &str) -> String {
        self.wrap("1;31", s)
    }
    /// Faults Immich can regenerate.
    pub fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }
    /// A clean result.
    pub fn green(self, s: &str) -> String {
        self.wrap("32", s)
    }
    /// Column headers.
    pub fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
}

/// Sets up `tracing` logs on stderr: `RUST_LOG` when set, else `warn`, raised by each `-v`
/// (`info`, then `debug`) and lowered to `error` by `-q`.
pub fn init_logging(verbose: u8, quiet: bool, color: ColorChoice) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(s).unwrap_or_else(|_| EnvFilter::new(default))
        }
        // sqlx logs unrecognised URL parameters with their values at `warn`: a password
        // holding `?` would be split into such a "parameter", so sqlx's options say nothing.
        _ => EnvFilter::new(format!("{default},sqlx_postgres::options=error")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color.enabled(std::io::stderr().is_terminal()))
        .with_target(false)
        .try_init();
}

/// The global presentation flags.
#[derive(Clone, Copy)]
pub(crate) struct Ui {
    pub(crate) color: ColorChoice,
    pub(crate) quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choices_ignore_the_terminal() {
        assert!(ColorChoice::Always.enabled(false));
        assert!(!ColorChoice::Never.enabled(true));
        assert!(!ColorChoice::Auto.enabled(false));
        assert_eq!(Paint(false).red("x"), "x");
        assert_eq!(Paint(true).red("x"), "\x1b[1;31mx\x1b[0m");
    }
}
