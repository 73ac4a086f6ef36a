//! `scan`: check every file every selected row points at.

use crate::args::{scan_options, LibraryArgs};
use crate::exit::{fail, Exit};
use crate::progress;
use crate::report::{Format, ReportSink};
use crate::style::Ui;
use immich_integrity::{Completion, Level};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) const SCAN_EXAMPLES: &str = "Examples (the common cases of \"images do not load\"):
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
  # without a .env (standard docker-compose install, UPLOAD_LOCATION=/srv/immich/library).
  # The password comes from PGPASSWORD, ~/.pgpass (or PGPASSFILE), never the command line,
  # which other local users can read in /proc:
  PGPASSWORD=... immich-integrity scan --db-url postgres://postgres@localhost:5432/immich \\
      --media-root /srv/immich/library --map /mnt/photos=/tank/photos
  # Machine-readable report for scripts:
  immich-integrity scan --env-file /opt/immich/.env --format jsonl --output report.jsonl

Exit codes: 0 clean, 1 faults found, 2 could not run (bad flag, DB unreachable), 3 incomplete
(a part of the database, e.g. persons, could not be checked: its query does not fit the
schema; the rest was checked and reported), 130 interrupted.";

#[derive(clap::Args)]
pub(crate) struct ScanArgs {
    #[command(flatten)]
    library: LibraryArgs,
    /// How deep to check, cheapest first: exists (one stat per file), quick (also read head
    /// and tail), hash (also SHA-1 each original against Immich's checksum, no decoding),
    /// full (also decode every file: images, HEIC/AVIF, JPEG XL, RAW, first video frames).
    #[arg(long, default_value = "exists")]
    level: Level,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here (atomically) instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Keep a blake3 manifest in FILE (created if absent): at quick and deeper, files unchanged
    /// (size, mtime, inode) since they were last found healthy are not read again.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// With --manifest: read every file anyway and report `bitrot` where the content changed
    /// while size and mtime did not (a periodic scrub).
    #[arg(long, requires = "manifest")]
    verify_manifest: bool,
}

pub(crate) fn run(args: ScanArgs, ui: Ui) -> ExitCode {
    if let Err(e) = crate::args::refuse_writes(
        &args.library,
        &[
            ("--output", args.output.as_deref()),
            ("--manifest", args.manifest.as_deref()),
        ],
    ) {
        return fail(e);
    }
    let mut opts = match scan_options(args.library) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    opts.level = args.level;
    opts.manifest = args.manifest;
    opts.verify_manifest = args.verify_manifest;

    let mut sink = match ReportSink::new(args.format, args.output.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // Progress only for a person watching stderr; the total costs one count(*) per table.
    if !ui.quiet && std::io::stderr().is_terminal() {
        opts.source.count_total = true;
        sink.set_meter(Some(progress::Meter::new(opts.level)));
    }
    sink.set_color(ui.color.enabled(std::io::stdout().is_terminal()));
    sink.set_cancel(opts.cancel.clone());
    let result = immich_integrity::scan(&opts, &mut sink);
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            sink.abandon();
            return fail(e);
        }
    };
    // The reader left (`scan | head -1`): end quietly, with the status of what was found.
    let quiet_end = |s: &immich_integrity::Summary| {
        ExitCode::from(if s.findings == 0 {
            Exit::Clean
        } else {
            Exit::Faults
        })
    };
    if sink.broken_pipe() {
        sink.abandon();
        return quiet_end(&summary);
    }
    for why in &summary.resumes {
        eprintln!("immich-integrity: reconnected: {why}");
    }
    if let Err(e) = sink.finish(&summary) {
        if args.output.is_none() && crate::out::is_broken_pipe(&e) {
            return quiet_end(&summary);
        }
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
        return ExitCode::from(Exit::Failed);
    }
    match &summary.completion {
        Completion::Interrupted => {
            eprintln!("immich-integrity: interrupted; the report holds the findings so far");
            ExitCode::from(Exit::Interrupted)
        }
        Completion::Failed(why) => {
            eprintln!(
                "immich-integrity: scan stopped early: {}",
                crate::hints::render(why)
            );
            ExitCode::from(Exit::Failed)
        }
        Completion::Complete if !summary.unchecked.is_empty() => {
            for u in &summary.unchecked {
                eprintln!(
                    "immich-integrity: {} rows were not checked: {} (run `immich-integrity \
                     doctor` for the statement and column)",
                    u.part, u.reason
                );
            }
            ExitCode::from(Exit::Incomplete)
        }
        Completion::Complete if summary.is_clean() => ExitCode::from(Exit::Clean),
        Completion::Complete => ExitCode::from(Exit::Faults),
    }
}
