//! `immich-integrity`: a thin command line over the `immich-integrity` library.

mod doctor;
mod explain;
mod extras;
mod orphans;
mod progress;
mod regenerate;
mod report;
mod style;

use clap::{CommandFactory, Parser, Subcommand};
use immich_integrity::{Completion, FileKind, Identity, Level, ScanOptions};
use report::{Format, ReportSink};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use style::ColorChoice;

const EXIT_CLEAN: u8 = 0;
const EXIT_FAULTS: u8 = 1;
const EXIT_FAILED: u8 = 2;
/// The scan ran, but a part of the database could not be checked (its query does not fit
/// the schema): the report is incomplete, whatever it found.
const EXIT_INCOMPLETE: u8 = 3;
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "immich-integrity",
    version,
    about = "Find which Immich photos and videos are missing, misplaced, unreadable or corrupt",
    after_help = SCAN_EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour the table report: auto (on a terminal unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
    /// More log detail on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr, and no progress bar.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Check every file every asset row points at.
    #[command(after_help = SCAN_EXAMPLES)]
    Scan(ScanArgs),
    /// Point rows of `moved` files at where the files really are (dry run unless --apply).
    Relink(RelinkArgs),
    /// Restore what a relink or `regenerate --via queue` journal changed (idempotent).
    Undo(UndoArgs),
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

#[derive(clap::Args)]
struct RelinkArgs {
    #[command(flatten)]
    library: LibraryArgs,
    /// Take the moved findings from a saved `scan --format jsonl` report instead of scanning.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Change the database. Without it, only print the plan.
    #[arg(long)]
    apply: bool,
    /// Undo journal (JSON Lines, fsync'd before each batch).
    #[arg(long, default_value = "immich-integrity-relink.journal")]
    journal: PathBuf,
    /// Rows per transaction.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Plan a top folder whose moved rows all moved the same way (e.g. `upload/` ->
    /// `upload/upload/`) as one prefix rewrite once it has at least this many rows (0 = never).
    #[arg(long, default_value_t = 10)]
    prefix_min: usize,
}

#[derive(clap::Args)]
struct UndoArgs {
    /// The journal a `relink --apply` wrote.
    journal: PathBuf,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    db_url: Option<String>,
    /// Read the database settings from Immich's `.env`.
    #[arg(long)]
    env_file: Option<PathBuf>,
}

const SCAN_EXAMPLES: &str = "Examples (the common cases of \"images do not load\"):
  # 1. Missing files after moving or restoring the upload folder (paths, volume mounts):
  #    the install's .env and docker-compose.yml say where everything is; `moved` rows
  #    (e.g. a restore nested as upload/upload) are fixed with `relink`.
  immich-integrity scan --env-file /opt/immich/.env
  # 2. EACCES / permission denied: check read access as the uid the server runs as.
  immich-integrity scan --env-file /opt/immich/.env --as-user 1000:1000
  # 3. Blank thumbnails across many assets (failed thumbnail jobs): only derived files;
  #    their repair is Immich's regenerate job.
  immich-integrity scan --env-file /opt/immich/.env --kind preview,thumbnail,encoded_video
  # 4. After a crash, full disk or upgrade: read file heads and tails of recent assets.
  immich-integrity scan --env-file /opt/immich/.env --level quick --since 2026-01-01
  # 5. One user reports broken images: check their library first, including the trash.
  immich-integrity scan --env-file /opt/immich/.env --owner alice@example.com --include-trashed
  # External library mounted at /mnt/photos in the container, /tank/photos on the host,
  # without a .env (standard docker-compose install, UPLOAD_LOCATION=/srv/immich/library):
  immich-integrity scan --db-url postgres://postgres:PASS@localhost:5432/immich \\
      --media-root /srv/immich/library --map /mnt/photos=/tank/photos
  # Machine-readable report for scripts:
  immich-integrity scan --env-file /opt/immich/.env --format jsonl --output report.jsonl

Exit codes: 0 clean, 1 faults found, 2 could not run (bad flag, DB unreachable), 3 incomplete
(a part of the database, e.g. persons, could not be checked: its query does not fit the
schema; the rest was checked and reported), 130 interrupted.";

#[derive(clap::Args)]
struct ScanArgs {
    #[command(flatten)]
    library: LibraryArgs,
    /// How deep to check: exists (one stat per file), quick (also read head and tail),
    /// full (also decode images and the first video frames), hash (also SHA-1 each original
    /// against Immich's checksum).
    #[arg(long, default_value = "exists")]
    level: Level,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here (atomically) instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Keep a blake3 manifest in FILE (created if absent): at quick/hash, files unchanged
    /// (size, mtime, inode) since they were last found healthy are not read again.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// With --manifest: read every file anyway and report `bitrot` where the content changed
    /// while size and mtime did not (a periodic scrub).
    #[arg(long, requires = "manifest")]
    verify_manifest: bool,
}

/// Where the library is and whose access matters (shared by scan and relink).
#[derive(clap::Args)]
pub(crate) struct LibraryArgs {
    /// PostgreSQL URL of Immich's database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    db_url: Option<String>,
    /// Immich's docker `.env` (beside docker-compose.yml): database, UPLOAD_LOCATION and the
    /// server's bind mounts are read from it and the compose file. Explicit flags win.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Host folder holding Immich's upload/, thumbs/, encoded-video/ ... folders (UPLOAD_LOCATION).
    #[arg(long)]
    media_root: Option<PathBuf>,
    /// Immich's media location inside the container (default: read from the database).
    #[arg(long)]
    media_location: Option<String>,
    /// CONTAINER=HOST path mapping (repeatable), e.g. /mnt/photos=/tank/photos.
    #[arg(long = "map", value_parser = parse_map)]
    maps: Vec<(String, PathBuf)>,
    /// Evaluate read access for the uid[:gid] the Immich server runs as.
    #[arg(long, value_parser = Identity::parse)]
    as_user: Option<Identity>,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    jobs: usize,
    /// Check only shard K of N (0-based): N processes with K = 0..N cover every asset once.
    #[arg(long)]
    shard: Option<immich_integrity::Shard>,
    /// Also check assets in the trash.
    #[arg(long)]
    include_trashed: bool,
    /// Reconnect attempts after a lost database connection (reset, terminated, server
    /// restarting) before giving up; the scan resumes after the last row read. 0 = never.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Only assets (and persons, profile image) of these users: ids or e-mail addresses,
    /// repeatable or comma-separated.
    #[arg(long = "owner", value_name = "ID|EMAIL", value_delimiter = ',')]
    owners: Vec<String>,
    /// Only assets of this external library (id); persons and profile images are skipped.
    #[arg(long, value_name = "ID")]
    library: Option<String>,
    /// Only these file kinds, comma-separated: original, sidecar, preview, thumbnail,
    /// fullsize, encoded_video, person_thumbnail, profile_image.
    #[arg(long = "kind", value_name = "KIND", value_delimiter = ',')]
    kinds: Vec<FileKind>,
    /// At most N assets (the first in id order); persons and users are not limited.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Only rows created or updated after this date (YYYY-MM-DD, UTC) or RFC 3339 instant.
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Rows fetched per database round trip.
    #[arg(long, default_value_t = 2000, hide = true)]
    batch_size: usize,
}

fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("--since wants a date like 2026-01-31 or 2026-01-31T08:00:00Z, got {s:?}")
        })
}

fn parse_map(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((c, h)) if !c.is_empty() && !h.is_empty() => Ok((c.to_string(), PathBuf::from(h))),
        _ => Err(format!("--map wants CONTAINER=HOST, got {s:?}")),
    }
}

static CANCEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(c) = CANCEL.get() {
        c.store(true, Ordering::Relaxed);
    }
}

fn install_signal_handlers(cancel: Arc<AtomicBool>) {
    let _ = CANCEL.set(cancel);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                EXIT_FAILED
            } else {
                EXIT_CLEAN
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
        Command::Scan(args) => run_scan(args, ui),
        Command::Relink(args) => run_relink(args),
        Command::Undo(args) => run_undo(args),
        Command::Regenerate(args) => {
            regenerate::run(args, immich_integrity::regenerate::Purpose::Derivatives)
        }
        Command::RefreshMetadata(args) => {
            regenerate::run(args, immich_integrity::regenerate::Purpose::Metadata)
        }
        Command::Doctor(args) => doctor::run(args),
        Command::Orphans(args) => orphans::run_orphans(args),
        Command::ExplainReport(args) => explain::run_explain(args),
        Command::Completions { shell } => {
            extras::completions(shell, Cli::command(), &mut std::io::stdout());
            ExitCode::from(EXIT_CLEAN)
        }
        Command::Man { subcommand } => {
            match extras::man(
                Cli::command(),
                subcommand.as_deref(),
                &mut std::io::stdout(),
            ) {
                Ok(()) => ExitCode::from(EXIT_CLEAN),
                Err(e) => fail(e),
            }
        }
    }
}

/// The global presentation flags.
#[derive(Clone, Copy)]
struct Ui {
    color: ColorChoice,
    quiet: bool,
}

pub(crate) fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("immich-integrity: {msg}");
    ExitCode::from(EXIT_FAILED)
}

fn load_install(
    env_file: Option<&std::path::Path>,
) -> Result<immich_integrity::envfile::InstallConfig, String> {
    match env_file {
        Some(p) => immich_integrity::envfile::load(p)
            .map_err(|e| format!("cannot read {}: {e}", p.display())),
        None => Ok(Default::default()),
    }
}

fn db_url_of(
    flag: Option<String>,
    install: &immich_integrity::envfile::InstallConfig,
) -> Result<String, String> {
    flag.or_else(|| install.db_url.clone())
        .ok_or_else(|| "no database: pass --db-url, --env-file or set DATABASE_URL".to_string())
}

/// Scan options from flags, then the install's files: explicit flags win.
pub(crate) fn scan_options(args: LibraryArgs) -> Result<ScanOptions, String> {
    let install = load_install(args.env_file.as_deref())?;
    let mut opts = ScanOptions::new(db_url_of(args.db_url, &install)?);
    opts.media_root = args.media_root.or(install.media_root);
    opts.media_location = args.media_location.or(install.media_location);
    opts.maps = install.maps;
    for (c, h) in args.maps {
        opts.maps.retain(|(ic, _)| ic != &c);
        opts.maps.push((c, h));
    }
    opts.as_user = match (args.as_user, &install.server_user) {
        (Some(u), _) => Some(u),
        (None, Some(u)) => {
            Some(Identity::parse(u).map_err(|e| format!("the compose file's user: {e}"))?)
        }
        (None, None) => None,
    };
    opts.jobs = args.jobs;
    opts.source.include_trashed = args.include_trashed;
    opts.source.shard = args.shard;
    opts.source.batch_size = args.batch_size.max(1);
    opts.source.retries = args.retries;
    opts.source.owners = args.owners;
    opts.source.library = args.library;
    opts.source.kinds = args.kinds;
    opts.source.limit = args.limit;
    opts.source.since = args.since;
    if opts.source.is_filtered() {
        tracing::info!(
            owners = ?opts.source.owners,
            library = ?opts.source.library,
            kinds = ?opts.source.kinds,
            limit = ?opts.source.limit,
            since = ?opts.source.since,
            "filters"
        );
    }
    install_signal_handlers(opts.cancel.clone());
    Ok(opts)
}

fn run_scan(args: ScanArgs, ui: Ui) -> ExitCode {
    let mut opts = match scan_options(args.library) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    opts.level = args.level;
    opts.manifest = args.manifest;
    opts.verify_manifest = args.verify_manifest;

    let mut sink = match ReportSink::new(args.format, args.output.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("immich-integrity: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    // Progress only for a person watching stderr; the total costs one count(*) per table.
    if !ui.quiet && std::io::stderr().is_terminal() {
        opts.source.count_total = true;
        sink.set_meter(Some(progress::Meter::new(opts.level)));
    }
    sink.set_color(ui.color.enabled(std::io::stdout().is_terminal()));
    let result = immich_integrity::scan(&opts, &mut sink);
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            sink.abandon();
            eprintln!("immich-integrity: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    for why in &summary.resumes {
        eprintln!("immich-integrity: reconnected: {why}");
    }
    if let Err(e) = sink.finish(&summary) {
        let dest = args
            .output
            .as_ref()
            .map(|p| format!(" {}", p.display()))
            .unwrap_or_else(|| " to standard output".into());
        eprintln!(
            "immich-integrity: cannot write the report{dest}: {}; no partial report was left \
             in its place",
            immich_integrity::error::io_detail(&e)
        );
        return ExitCode::from(EXIT_FAILED);
    }
    match &summary.completion {
        Completion::Interrupted => {
            eprintln!("immich-integrity: interrupted; the report holds the findings so far");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Completion::Failed(why) => {
            eprintln!("immich-integrity: scan stopped early: {why}");
            ExitCode::from(EXIT_FAILED)
        }
        Completion::Complete if !summary.unchecked.is_empty() => {
            for u in &summary.unchecked {
                eprintln!(
                    "immich-integrity: {} rows were not checked: {} (run `immich-integrity \
                     doctor` for the statement and column)",
                    u.part, u.reason
                );
            }
            ExitCode::from(EXIT_INCOMPLETE)
        }
        Completion::Complete if summary.is_clean() => ExitCode::from(EXIT_CLEAN),
        Completion::Complete => ExitCode::from(EXIT_FAULTS),
    }
}

/// Repairs act on the parts a scan checked; say which were left out.
pub(crate) fn warn_unchecked(summary: &immich_integrity::Summary, verb: &str) {
    for u in &summary.unchecked {
        eprintln!(
            "immich-integrity: {} rows were not checked ({}), so none of them is {verb}",
            u.part, u.reason
        );
    }
}

fn run_relink(args: RelinkArgs) -> ExitCode {
    use immich_integrity::relink;
    let opts = match scan_options(args.library) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let steps = match &args.from {
        Some(report) => match relink::plan_from_report(report) {
            Ok(s) => s,
            Err(e) => return fail(e),
        },
        None => {
            let mut findings: Vec<immich_integrity::Finding> = Vec::new();
            match immich_integrity::scan(&opts, &mut findings) {
                Ok(s) if s.completion == Completion::Complete => {
                    warn_unchecked(&s, "relinked");
                    relink::plan(&findings)
                }
                Ok(s) if s.completion == Completion::Interrupted => {
                    eprintln!("immich-integrity: interrupted during the scan; nothing relinked");
                    return ExitCode::from(EXIT_INTERRUPTED);
                }
                Ok(_) => return fail("the scan did not complete; nothing relinked"),
                Err(e) => return fail(e),
            }
        }
    };
    let plan = relink::plan_prefixes(steps, args.prefix_min);
    let print_rows = |rows: &[relink::RelinkStep]| {
        for s in rows {
            println!(
                "{} {} {}: {} -> {}",
                if args.apply { "relink" } else { "would relink" },
                s.file,
                s.id,
                s.old,
                s.new
            );
        }
    };
    if !args.apply {
        let checks = match relink::check_prefixes(&opts.source.db_url, &plan) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let (mut rewritten, mut single) = (0u64, plan.rows.len());
        for (p, c) in plan.prefixes.iter().zip(&checks) {
            match &c.verdict {
                Ok(n) => {
                    rewritten += n;
                    println!(
                        "prefix rewrite {} -> {}, {n} rows",
                        c.old_prefix, c.new_prefix
                    )
                }
                Err(why) => {
                    println!(
                        "prefix {} -> {} cannot be one rewrite ({why}); its {} rows one by one:",
                        c.old_prefix,
                        c.new_prefix,
                        p.steps.len()
                    );
                    print_rows(&p.steps);
                    single += p.steps.len();
                }
            }
        }
        print_rows(&plan.rows);
        println!(
            "dry run: {} rows would be relinked ({rewritten} by prefix rewrite, {single} one by \
             one); pass --apply to change the database",
            rewritten as usize + single
        );
        return ExitCode::from(EXIT_CLEAN);
    }
    match relink::apply_plan(
        &opts.source.db_url,
        &plan,
        &args.journal,
        args.batch,
        &opts.cancel,
    ) {
        Ok(report) => {
            for (p, q, n) in &report.prefix_rewrites {
                println!("prefix rewrite {p} -> {q}, {n} rows");
            }
            for (p, q, why) in &report.prefix_fallbacks {
                println!("prefix {p} -> {q} was relinked row by row: {why}");
            }
            for (s, why) in &report.skipped {
                println!("skipped {} {}: {why}", s.file, s.id);
            }
            if report.interrupted {
                let rolled = report
                    .rolled_back
                    .map(|b| format!("batch {b} was rolled back whole; "))
                    .unwrap_or_default();
                eprintln!(
                    "immich-integrity: interrupted: {rolled}{} rows in {} committed batches stay \
                     relinked (the journal says so); undo with: immich-integrity undo {}",
                    report.applied.len(),
                    report.batches,
                    args.journal.display()
                );
                return ExitCode::from(EXIT_INTERRUPTED);
            }
            println!(
                "relinked {} rows in {} batches, skipped {}; undo with: immich-integrity undo {}",
                report.applied.len(),
                report.batches,
                report.skipped.len(),
                args.journal.display()
            );
            ExitCode::from(if report.skipped.is_empty() {
                EXIT_CLEAN
            } else {
                EXIT_FAULTS
            })
        }
        Err(e) => fail(e),
    }
}

fn run_undo(args: UndoArgs) -> ExitCode {
    let url = match load_install(args.env_file.as_deref()).and_then(|i| db_url_of(args.db_url, &i))
    {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    if immich_integrity::regenerate::is_queue_journal(&args.journal) {
        return match immich_integrity::regenerate::undo_queue(&url, &args.journal) {
            Ok(n) => {
                println!("restored {n} rows from {}", args.journal.display());
                ExitCode::from(EXIT_CLEAN)
            }
            Err(e) => fail(e),
        };
    }
    match immich_integrity::relink::undo(&url, &args.journal) {
        Ok(n) => {
            println!("restored {n} rows from {}", args.journal.display());
            ExitCode::from(EXIT_CLEAN)
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_accepts_dates_and_instants_in_utc() {
        let t = |s: &str| parse_since(s).map(|d| d.to_rfc3339());
        assert_eq!(t("2026-01-31").unwrap(), "2026-01-31T00:00:00+00:00");
        assert_eq!(t("2026-01-31 08:30").unwrap(), "2026-01-31T08:30:00+00:00");
        assert_eq!(
            t("2026-01-31T08:30:00+02:00").unwrap(),
            "2026-01-31T06:30:00+00:00"
        );
        assert!(t("31/01/2026")
            .unwrap_err()
            .contains("--since wants a date"));
        assert!(t("2026-02-30").is_err());
    }
}
