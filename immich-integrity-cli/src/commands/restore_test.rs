//! `immich-integrity restore-test`: would this database dump and this media backup come back
//! together? The dump stands in for the database; the live one is never touched.

use crate::args::{parse_identity, parse_jobs, parse_map};
use crate::exit::{fail, Exit};
use crate::text::esc;
use immich_integrity::restore::{run, Backend, Ending, RestoreOptions, RestoreReport};
use immich_integrity::{Identity, Level, ScanOptions};
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) const RESTORE_HELP: &str = "\
Exit codes: 0 the pair would restore cleanly; 1 differences found; 2 could not run; \
3 incomplete (a truncated dump, or a part of it not read: never a clean result); 130 interrupted.

Examples:
  # The newest immich-db-backup-*.sql.gz in the backup's backups/ folder, no PostgreSQL needed:
  immich-integrity restore-test --media /mnt/snapshots/immich-2026-07-26
  # A given dump, SHA-1 of every original (bit rot in the backup), JSON report:
  immich-integrity restore-test --dump /backup/immich-db-backup-20260726T031500-v2.6.3-pg14.17.sql.gz \\
      --media /mnt/restic/latest/srv/immich/library --level hash --format json
  # Load the dump into a scratch database on a PostgreSQL instead (dropped afterwards):
  immich-integrity restore-test --media /backup/library --backend postgres \\
      --scratch-db postgres://postgres@localhost/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreFormat {
    Table,
    Json,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// Read the dump's COPY blocks without PostgreSQL (spilled to disk; the default).
    Stream,
    /// Load the dump into a scratch database on --scratch-db, scan it, drop it.
    Postgres,
}

#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    /// The database backup (.sql or .sql.gz from pg_dumpall or pg_dump); default: the newest
    /// immich-db-backup-*.sql.gz in the media backup's backups/ folder.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// The media backup: a folder holding upload/, thumbs/, ... (an rsync copy, a mounted
    /// restic/borg snapshot, a .zfs/snapshot/... folder).
    #[arg(long, visible_alias = "media-root")]
    media: PathBuf,
    /// How deep to check, as for scan: exists, quick, full, hash.
    #[arg(long, default_value = "exists")]
    level: Level,
    /// How to read the dump.
    #[arg(long, value_enum, default_value_t = BackendChoice::Stream)]
    backend: BackendChoice,
    /// With --backend postgres: a maintenance database URL on the server that gets the scratch
    /// database (never the live Immich database's name; password from PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "URL")]
    scratch_db: Option<String>,
    /// Where the stream backend spills its sorted runs (default TMPDIR).
    #[arg(long)]
    temp_dir: Option<PathBuf>,
    /// Immich's media location inside the container (default: the dump's MediaLocation).
    #[arg(long)]
    media_location: Option<String>,
    /// CONTAINER=HOST for external libraries in the backup (repeatable).
    #[arg(long = "map", value_parser = parse_map)]
    maps: Vec<(String, PathBuf)>,
    /// Evaluate read access as this uid[:gid] (the Immich server's).
    #[arg(long, value_parser = parse_identity)]
    as_user: Option<Identity>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0, value_parser = parse_jobs)]
    jobs: usize,
    /// Check trashed assets too.
    #[arg(long)]
    include_trashed: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = RestoreFormat::Table)]
    format: RestoreFormat,
    /// Write the report here (atomically) instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

fn render(r: &RestoreReport, format: RestoreFormat) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        RestoreFormat::Jsonl => {
            for f in &r.findings {
                serde_json::to_writer(&mut out, f)?;
                out.push(b'\n');
            }
            for u in &r.untracked {
                let mut v = serde_json::to_value(u)?;
                v["category"] = "untracked".into();
                serde_json::to_writer(&mut out, &v)?;
                out.push(b'\n');
            }
            serde_json::to_writer(&mut out, &r.summary)?;
            out.push(b'\n');
        }
        RestoreFormat::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({
                    "findings": r.findings, "untracked": r.untracked, "summary": r.summary
                }),
            )?;
            out.push(b'\n');
        }
        RestoreFormat::Table => out.extend_from_slice(table(r).as_bytes()),
    }
    Ok(out)
}

fn table(r: &RestoreReport) -> String {
    let s = &r.summary;
    let d = &s.dump;
    let mut t = format!(
        "dump {} (database {})\n",
        d.path.display(),
        esc(&d.database)
    );
    match &d.ending {
        Ending::Complete => t.push_str("  complete: ends with pg_dump's completion comment\n"),
        Ending::Truncated(why) => t.push_str(&format!("  INCOMPLETE: {}\n", esc(why))),
    }
    if let Some(time) = d.time {
        t.push_str(&format!("  taken {}\n", time.to_rfc3339()));
    }
    let needs = d
        .immich_version
        .as_deref()
        .or(d.name.server_version.as_deref());
    t.push_str(&format!(
        "  needs Immich {} (version_history: {}; file name: {}), PostgreSQL {}\n",
        needs.unwrap_or("unknown"),
        d.immich_version.as_deref().unwrap_or("none"),
        d.name.server_version.as_deref().unwrap_or("none"),
        d.name
            .postgres_version
            .as_deref()
            .or(d.dumped_from_postgres.as_deref())
            .unwrap_or("unknown")
    ));
    t.push_str(&format!(
        "{} originals missing from the media backup",
        s.missing_originals
    ));
    if let Some((lo, hi)) = &s.missing_created {
        t.push_str(&format!(" (created {lo} .. {hi})"));
    }
    t.push_str(&format!(
        "\n{} derivatives to regenerate, {} checksum mismatches, {} other faults\n",
        s.regenerate, s.checksum_mismatches, s.other
    ));
    match &s.untracked_not_listed {
        Some(why) => t.push_str(&format!("untracked files not listed: {}\n", esc(why))),
        None => t.push_str(&format!(
            "{} untracked files in the media backup ({} modified after the dump)\n",
            s.untracked, s.untracked_after_dump
        )),
    }
    for u in &s.scan.unchecked {
        t.push_str(&format!(
            "NOT CHECKED {}: {}\n",
            esc(&u.part),
            esc(&u.reason)
        ));
    }
    for f in &r.findings {
        let x = &f.finding;
        let age = f
            .created_before_dump_s
            .map(|s| format!(", created {s} s before the dump"))
            .unwrap_or_default();
        t.push_str(&format!(
            "{} {} {} {}: {}{age}\n",
            f.category,
            x.file.map(|k| k.as_str()).unwrap_or("mount"),
            esc(x.asset_id.as_deref().unwrap_or("-")),
            esc(x.host_path.as_deref().unwrap_or("-")),
            esc(&x.detail)
        ));
    }
    for u in &r.untracked {
        t.push_str(&format!(
            "untracked {} {} bytes{}\n",
            esc(&u.path.to_string_lossy()),
            u.size,
            if u.after_dump == Some(true) {
                ", modified after the dump"
            } else {
                ""
            }
        ));
    }
    if !s.skipped_statements.is_empty() {
        t.push_str(&format!(
            "{} statements of the dump were skipped in the scratch database (first: {})\n",
            s.skipped_statements.len(),
            esc(&format!(
                "{}: {}",
                s.skipped_statements[0].0, s.skipped_statements[0].1
            ))
        ));
    }
    t
}

pub(crate) fn run_restore_test(args: RestoreArgs) -> ExitCode {
    let roots = vec![args.media.clone()];
    if let Some(out) = &args.output {
        if let Err(e) = immich_integrity::refuse_inside_roots("--output", out, &roots) {
            return fail(e);
        }
    }
    let backend = match (args.backend, args.scratch_db) {
        (BackendChoice::Stream, None) => Backend::Stream,
        (BackendChoice::Postgres, Some(url)) => Backend::Postgres(url),
        (BackendChoice::Stream, Some(_)) => return fail("--scratch-db is for --backend postgres"),
        (BackendChoice::Postgres, None) => {
            return fail(
                "--backend postgres needs --scratch-db URL (a server for the scratch database)",
            )
        }
    };
    let mut scan = ScanOptions::new(String::new());
    scan.media_root = Some(args.media.clone());
    scan.origins.media_root = Some("flag --media".into());
    scan.media_location = args.media_location;
    if scan.media_location.is_some() {
        scan.origins.media_location = Some("flag --media-location".into());
    }
    for (c, _) in &args.maps {
        scan.origins.maps.insert(c.clone(), "flag --map".into());
    }
    scan.maps = args.maps;
    scan.as_user = args.as_user;
    scan.level = args.level;
    scan.jobs = args.jobs;
    scan.source.include_trashed = args.include_trashed;
    crate::signals::install_signal_handlers(scan.cancel.clone());
    let opts = RestoreOptions {
        scan,
        dump: args.dump,
        backend,
        temp_dir: args.temp_dir,
    };
    let report = match run(&opts) {
        Ok(r) => r,
        Err(immich_integrity::Error::Interrupted) => {
            eprintln!("immich-integrity: interrupted; no report written");
            return ExitCode::from(Exit::Interrupted);
        }
        Err(e) => return fail(e),
    };
    let bytes = match render(&report, args.format) {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot render the report: {e}")),
    };
    if let Err(e) = crate::report::deliver(args.output.as_deref(), &bytes) {
        return fail(e);
    }
    let s = &report.summary;
    if s.scan.completion == immich_integrity::Completion::Interrupted {
        return ExitCode::from(Exit::Interrupted);
    }
    if s.is_partial() {
        eprintln!(
            "immich-integrity: the restore test is incomplete: {}",
            match &s.dump.ending {
                Ending::Truncated(why) => why.clone(),
                Ending::Complete => "a part of the dump could not be read".into(),
            }
        );
        return ExitCode::from(Exit::Incomplete);
    }
    ExitCode::from(if s.is_clean() {
        Exit::Clean
    } else {
        Exit::Faults
    })
}
