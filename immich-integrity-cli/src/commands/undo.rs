//! `undo`: restore what a relink or queue-mode regenerate journal's runs committed.

use crate::args::{db_url_of, load_install};
use crate::exit::{fail, Exit};
use crate::text::esc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct UndoArgs {
    /// The journal a `relink --apply` or `regenerate --via queue --apply` wrote.
    journal: PathBuf,
    /// Undo only this run (repeatable; the ids are in the journal's `run` lines). Default:
    /// every run in the journal.
    #[arg(long = "run", value_name = "ID", help_heading = crate::args::SEL)]
    runs: Vec<String>,
    /// Show what would be restored and what would be left alone, and change nothing.
    #[arg(long, help_heading = crate::args::SAFETY)]
    dry_run: bool,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, help_heading = crate::args::CONN)]
    db_url: Option<String>,
    /// Read the database settings from Immich's `.env`.
    #[arg(long, help_heading = crate::args::CONN)]
    env_file: Option<PathBuf>,
}

pub(crate) fn run(args: UndoArgs) -> ExitCode {
    let from_flag = args.db_url.is_some();
    let url = match load_install(args.env_file.as_deref())
        .and_then(|i| db_url_of(args.db_url, &i))
        .and_then(|u| crate::args::routed_db_url(u, from_flag, args.env_file.as_deref()))
        .map(|(u, _)| u)
    {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let opts = immich_integrity::UndoOptions {
        runs: args.runs,
        dry_run: args.dry_run,
    };
    let report = match immich_integrity::undo_journal(&url, &args.journal, &opts) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let kind = report.kind.map(|k| k.to_string()).unwrap_or_default();
    let journal = esc(&args.journal.display().to_string()).into_owned();
    println!(
        "{} {} rows from {}, {} already restored, {} left alone (changed since the run){}",
        if report.dry_run {
            "dry run: would restore"
        } else {
            "restored"
        },
        report.restored,
        journal,
        report.already,
        report.skipped.len(),
        if report.damaged.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable lines", report.damaged.len())
        }
    );
    for (id, at) in &report.runs {
        println!("{kind} run {} of {}", esc(id), esc(at));
    }
    for (line, why) in &report.damaged {
        println!("line {line} of {journal}: {}", esc(why));
    }
    for s in &report.skipped {
        println!("left alone: {}", esc(s));
    }
    ExitCode::from(if report.complete() {
        Exit::Clean
    } else {
        Exit::Faults
    })
}
