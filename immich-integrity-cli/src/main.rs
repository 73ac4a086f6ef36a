//! `immich-integrity`: a thin command line over the `immich-integrity` library.

// `println!`, `print!`, `eprintln!` and `eprint!` panic when the stream is a closed pipe
// (`| head -1`): these, defined before the modules and so in scope in all of them, end quietly
// instead, like ripgrep: output to a reader that left is dropped and the command ends with
// its usual status. Any other write error is reported and exits 2.
macro_rules! println {
    ($($t:tt)*) => {
        $crate::out::line(&mut std::io::stdout(), format_args!($($t)*), true)
    };
}
macro_rules! print {
    ($($t:tt)*) => {
        $crate::out::line(&mut std::io::stdout(), format_args!($($t)*), false)
    };
}
macro_rules! eprintln {
    ($($t:tt)*) => {
        $crate::out::line(&mut std::io::stderr(), format_args!($($t)*), true)
    };
}

mod args;
mod commands;
mod exit;
mod hints;
mod metrics;
mod out;
mod progress;
mod report;
mod signals;
mod state;
mod steps;
mod style;
mod text;

use clap::{CommandFactory, Parser, Subcommand};
use commands::{doctor, explain, extras, orphans, regenerate, relink, restore_test, scan, undo};
use exit::{fail, Exit};
use std::process::ExitCode;
use style::ColorChoice;
use style::Ui;

#[derive(Parser)]
#[command(
    name = "immich-integrity",
    version,
    about = "Find which Immich photos and videos are missing, misplaced, unreadable or corrupt",
    after_help = scan::SCAN_EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour the table report: auto (on a terminal unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, help_heading = args::OUT)]
    color: ColorChoice,
    /// More log detail on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = args::OUT)]
    verbose: u8,
    /// Only errors on stderr, and no progress bar.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = args::OUT)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Check every file every asset row points at.
    #[command(after_help = scan::SCAN_EXAMPLES)]
    Scan(scan::ScanArgs),
    /// Point rows of `moved` files at where the files really are (dry run unless --apply).
    Relink(relink::RelinkArgs),
    /// Restore what a relink or `regenerate --via queue` journal changed (idempotent).
    Undo(undo::UndoArgs),
    /// Have Immich rebuild broken previews, thumbnails, fullsize images and encoded videos
    /// (dry run unless --apply).
    #[command(after_help = regenerate::REGEN_HELP)]
    Regenerate(regenerate::RegenArgs),
    /// Have Immich re-read metadata of assets whose sidecar is broken (dry run unless --apply).
    #[command(after_help = regenerate::REGEN_HELP)]
    RefreshMetadata(regenerate::RegenArgs),
    /// Check what stops Immich from showing photos: database, migrations, media location,
    /// folders and markers, permissions, free space, backups, missing thumbnails.
    #[command(after_help = doctor::DOCTOR_HELP)]
    Doctor(doctor::DoctorArgs),
    /// List files under the media root that no row references (exit 1 when there are any).
    Orphans(orphans::OrphansArgs),
    /// Explain each row of Immich v3's own integrity report (missing, untracked, checksum
    /// mismatch): why it was filed and what to do. Read-only.
    #[command(after_help = explain::EXPLAIN_HELP)]
    ExplainReport(explain::ExplainArgs),
    /// Restore test without restoring: check a database dump against a media backup, as a
    /// scan would after restoring both (the live database is never touched).
    #[command(after_help = restore_test::RESTORE_HELP)]
    RestoreTest(restore_test::RestoreArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of the command, or of one subcommand.
    #[command(hide = true)]
    Man {
        /// A subcommand, e.g. scan.
        subcommand: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Failed
            } else {
                Exit::Clean
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    style::init_logging(cli.verbose, cli.quiet, cli.color);
    let ui = Ui {
        color: cli.color,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Scan(args) => scan::run(args, ui),
        Command::Relink(args) => relink::run(args),
        Command::Undo(args) => undo::run(args),
        Command::Regenerate(args) => {
            regenerate::run(args, immich_integrity::regenerate::Purpose::Derivatives)
        }
        Command::RefreshMetadata(args) => {
            regenerate::run(args, immich_integrity::regenerate::Purpose::Metadata)
        }
        Command::Doctor(args) => doctor::run(args),
        Command::Orphans(args) => orphans::run_orphans(args),
        Command::ExplainReport(args) => explain::run_explain(args),
        Command::RestoreTest(args) => restore_test::run_restore_test(args),
        Command::Completions { shell } => {
            extras::completions(shell, Cli::command(), &mut std::io::stdout());
            ExitCode::from(Exit::Clean)
        }
        Command::Man { subcommand } => {
            match extras::man(
                Cli::command(),
                subcommand.as_deref(),
                &mut std::io::stdout(),
            ) {
                Ok(()) => ExitCode::from(Exit::Clean),
                Err(e) => fail(e),
            }
        }
    }
}
