//! `immich-integrity doctor`: one line per check (OK / WARN / FAIL, the finding, the fix).

use crate::args::{scan_options, LibraryArgs};
use crate::exit::{fail, Exit};
use crate::hints;
use immich_integrity::docker::{compose::ComposeEnv, default_socket, discovery, Client};
use immich_integrity::doctor::{self, DoctorOptions, Report, Status};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub const DOCTOR_HELP: &str = "Examples:
  # Everything from the install's .env (database, UPLOAD_LOCATION, the server's user):
  immich-integrity doctor --env-file /opt/immich/.env
  # Explicit, for a server running as uid 1000 (the password from PGPASSWORD or ~/.pgpass):
  immich-integrity doctor --db-url postgres://postgres@localhost:5432/immich \\
      --media-root /srv/immich/library --as-user 1000:1000
  # Also through the reverse proxy, and a saved server log instead of the containers':
  immich-integrity doctor --env-file /opt/immich/.env --public-url https://photos.example.org \\
      --log-file server.log

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
    /// The Docker (or podman) socket to read containers and logs from (default: DOCKER_HOST,
    /// /var/run/docker.sock, podman's socket).
    #[arg(long, value_name = "PATH")]
    docker_socket: Option<PathBuf>,
    /// Classify this server log file instead of the containers' logs.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// How many of the newest log lines to read per container (or from --log-file).
    #[arg(long, default_value_t = 3000, value_name = "N")]
    log_lines: usize,
    /// An active background job running longer than this many minutes is stuck.
    #[arg(long, default_value_t = 60, value_name = "MINUTES")]
    stuck_after_minutes: u64,
    /// The URL users open (through the reverse proxy): compared with the server itself
    /// (reachability, TLS certificate, upload size limit, timeouts, WebSocket).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// The server's own address the proxy forwards to (default: the server container's
    /// address, else http://localhost:2283).
    #[arg(long, value_name = "URL")]
    server_url: Option<String>,
    /// Extra CA certificates (PEM) to trust for --public-url.
    #[arg(long, value_name = "FILE")]
    proxy_ca: Option<PathBuf>,
}

pub fn run(mut args: DoctorArgs) -> ExitCode {
    let install = match crate::args::load_install(args.library.env_file.as_deref()) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let db_data_dir = install.db_data_location.clone();
    let compose = match &args.library.env_file {
        Some(p) => match ComposeEnv::load(p) {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot read {}: {e}", p.display())),
        },
        None => ComposeEnv::defaults(),
    };
    // The .env's database, routed through Docker when its port is not published; when nothing
    // answers, the diagnosis goes into the `database` line and the other checks still run.
    let mut db_route = None;
    if let (None, Some(url)) = (&args.library.db_url, &install.db_url) {
        let socket = match &args.docker_socket {
            Some(s) => Ok(s.clone()),
            None => default_socket(),
        };
        let client = socket.map(|s| Client::new(s, Duration::from_secs(3)));
        let (url, why) = match discovery::database_url(
            url,
            compose.db_service.as_deref(),
            compose.project.as_deref(),
            client.as_ref(),
            Duration::from_secs(2),
        ) {
            Ok((u, note)) => (u, note),
            Err(e) => (url.clone(), Some(e.why)),
        };
        args.library.db_url = Some(url);
        db_route = why;
    }
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
    opts.compose = compose;
    opts.docker_socket = args.docker_socket;
    opts.db_route = db_route;
    opts.log_file = args.log_file;
    opts.log_lines = args.log_lines.max(1);
    opts.stuck_after = Duration::from_secs(args.stuck_after_minutes.saturating_mul(60));
    opts.public_url = args.public_url;
    opts.server_url = args.server_url;
    opts.proxy_ca = args.proxy_ca;
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
