//! `undo`: restore what a relink or queue-mode regenerate journal changed.

use crate::args::{db_url_of, load_install};
use crate::exit::{fail, Exit};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct UndoArgs {
    /// The journal a `relink --apply` wrote.
    journal: PathBuf,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    db_url: Option<String>,
    /// Read the database settings from Immich's `.env`.
    #[arg(long)]
    env_file: Option<PathBuf>,
}

pub(crate) fn run(args: UndoArgs) -> ExitCode {
    let url = match load_install(args.env_file.as_deref()).and_then(|i| db_url_of(args.db_url, &i))
    {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    if immich_integrity::regenerate::is_queue_journal(&args.journal) {
        return match immich_integrity::regenerate::undo_queue(&url, &args.journal) {
            Ok(n) => {
                println!("restored {n} rows from {}", args.journal.display());
                ExitCode::from(Exit::Clean)
            }
            Err(e) => fail(e),
        };
    }
    match immich_integrity::relink::undo(&url, &args.journal) {
        Ok(n) => {
            println!("restored {n} rows from {}", args.journal.display());
            ExitCode::from(Exit::Clean)
        }
        Err(e) => fail(e),
    }
}
