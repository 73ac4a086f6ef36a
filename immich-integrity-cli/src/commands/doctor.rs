//! `immich-integrity doctor`: one line per check (OK / WARN / FAIL, the finding, the fix).

use crate::args::{scan_options, LibraryArgs};
use crate::exit::{fail, Exit};
use crate::hints;
use immich_integrity::doctor::{self, DoctorOptions, Report, Status};
use std::process::ExitCode;
use std::time::Duration;

pub const DOCTOR_HELP: &str = "Examples:
  # Everything from the install's .env (database, UPLOAD_LOCATION, the server's user):
  immich-integrity doctor --env-file /opt/immich/.env
  # Explicit, for a server running as uid 1000 (the password from PGPASSWORD or ~/.pgpass):
  immich-integrity doctor --db-url postgres://postgres@localhost:5432/immich \\
      --media-root /srv/immich/library --as-user 1000:1000

Exit codes: 0 every check OK or WARN, 1 some check FAILed, 2 the database could not be reached,
logged into or recognised as Immich's (the file checks still ran and are shown), or a bad flag.";

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DoctorFormat {
    /// One line per check (`text` is the old name).
    #[value(alias = "text")]
    Table,
    /// One JSON object: {"checks": [...], "database_checked": bool}.
    Json,
    /// One check per line (`"type":"check"`), then `{"type":"summary","database_checked":..}`.
    Jsonl,
    /// name,status,message,fix per check, for spreadsheets.
    Csv,
}

/// The library flags that only matter to a scan are accepted but not shown.
#[derive(clap::Args)]
#[command(
    mut_arg("jobs", |a| a.hide(true)),
    mut_arg("shard", |a| a.hide(true)),
    mut_arg("include_trashed", |a| a.hide(true))
)]
pub struct DoctorArgs {
    #[command(flatten)]
    library: LibraryArgs,
    #[arg(short = 'f', long, value_enum, default_value_t = DoctorFormat::Table, help_heading = crate::args::OUT)]
    format: DoctorFormat,
    /// WARN when less than this percentage of a disk's space or inodes is free.
    #[arg(long, default_value_t = 10.0, help_heading = crate::args::CHECK)]
    min_free_percent: f64,
    /// WARN when the newest file in backups/ is older than this many days.
    #[arg(long, default_value_t = 7, help_heading = crate::args::CHECK)]
    max_backup_age_days: u64,
}

pub fn run(args: DoctorArgs) -> ExitCode {
    let db_data_dir = match crate::args::load_install(args.library.env_file.as_deref()) {
        Ok(i) => i.db_data_location,
        Err(e) => return fail(e),
    };
    let scan = match scan_options(args.library) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let mut opts = DoctorOptions::new(scan.source.db_url);
    opts.media_root = scan.media_root;
    opts.media_location = scan.media_location;
    opts.maps = scan.maps;
    opts.db_data_dir = db_data_dir;
    opts.as_user = scan.as_user;
    opts.min_free_percent = args.min_free_percent;
    opts.max_backup_age = Duration::from_secs(args.max_backup_age_days.saturating_mul(86400));
    let mut report = doctor::run(&opts);
    for c in &mut report.checks {
        c.message = hints::render(&c.message);
        c.fix = c.fix.as_deref().map(hints::render);
    }
    match args.format {
        DoctorFormat::Table => print!("{}", render(&report)),
        DoctorFormat::Jsonl => {
            for c in &report.checks {
                let mut v = serde_json::json!({"type": "check"});
                if let (Some(m), Ok(serde_json::Value::Object(c))) =
                    (v.as_object_mut(), serde_json::to_value(c))
                {
                    m.extend(c);
                }
                println!("{v}");
            }
            println!(
                "{}",
                serde_json::json!({"type": "summary", "database_checked": report.database_checked})
            );
        }
        DoctorFormat::Csv => {
            use crate::text::csv_cell;
            println!("name,status,message,fix");
            for c in &report.checks {
                println!(
                    "{},{},{},{}",
                    csv_cell(&c.name),
                    c.status.as_str(),
                    csv_cell(&c.message),
                    csv_cell(c.fix.as_deref().unwrap_or(""))
                );
            }
        }
        DoctorFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(format!("cannot encode the report: {e}")),
        },
    }
    ExitCode::from(exit_code(&report))
}

fn exit_code(report: &Report) -> Exit {
    if !report.database_checked {
        Exit::Failed
    } else if report.worst() == Status::Fail {
        Exit::Faults
    } else {
        Exit::Clean
    }
}

fn render(report: &Report) -> String {
    let mut out = String::new();
    let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
    for c in &report.checks {
        out.push_str(&format!(
            "{:<4} {}: {}",
            c.status.as_str(),
            c.name,
            c.message
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!(" -- fix: {fix}"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "{} OK, {} WARN, {} FAIL\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    ));
    out
}
