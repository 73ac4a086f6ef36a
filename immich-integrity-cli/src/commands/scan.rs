//! `scan`: check every file every selected row points at.

use crate::args::{scan_options, LibraryArgs};
use crate::exit::{fail, Exit};
use crate::progress;
use crate::report::{Format, ReportSink};
use crate::style::Ui;
use immich_integrity::{Completion, Level};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
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
schema; or a root did not answer within --io-timeout; or --time-limit ran out; the rest was
checked and reported), 130 interrupted.";

#[derive(clap::Args)]
pub(crate) struct ScanArgs {
    #[command(flatten)]
    library: LibraryArgs,
    /// How deep to check, cheapest first: exists (one stat per file), quick (also read head
    /// and tail), hash (also SHA-1 each original against Immich's checksum, no decoding),
    /// full (also decode every file: images, HEIC/AVIF, JPEG XL, RAW, first video frames).
    #[arg(long, default_value = "exists", help_heading = crate::args::CHECK)]
    level: Level,
    /// Report format (default: from --output's extension, .jsonl, .json or .csv; else table).
    #[arg(short = 'f', long, value_enum, help_heading = crate::args::OUT)]
    format: Option<Format>,
    /// Write the report here (atomically) instead of standard output.
    #[arg(short = 'o', long, help_heading = crate::args::OUT)]
    output: Option<PathBuf>,
    /// Keep a blake3 manifest in FILE (created if absent): at quick and deeper, files unchanged
    /// (size, mtime, inode) since they were last found healthy are not read again.
    #[arg(long, value_name = "FILE", help_heading = crate::args::CHECK)]
    manifest: Option<PathBuf>,
    /// With --manifest: read every file anyway and report `bitrot` where the content changed
    /// while size and mtime did not (a periodic scrub).
    #[arg(long, requires = "manifest", help_heading = crate::args::CHECK)]
    verify_manifest: bool,
    /// Also write Prometheus metrics here (text format, for node_exporter's textfile
    /// collector: name it *.prom in its folder): findings per fault and file kind, files
    /// checked, duration, last successful run. Written even when the scan cannot run.
    #[arg(long, value_name = "FILE", help_heading = crate::args::OUT)]
    metrics: Option<PathBuf>,
    /// How long one filesystem operation may take before its root (the media root, an
    /// external library's share) counts as unreachable: its remaining files are reported as
    /// not checked, once per root, and the scan goes on (exit 3). E.g. 30s, 2m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    io_timeout: std::time::Duration,
    /// File operations in flight at once (default: adapt to the storage, more while the
    /// rate of files grows, at most 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    io_depth: Option<u16>,
    /// At most this many bytes of file content read per second, e.g. 50M (k, M, G: powers of
    /// 1000; Ki, Mi, Gi: of 1024).
    #[arg(long, value_name = "BYTES", value_parser = parse_rate)]
    max_read_rate: Option<f64>,
    /// At most this many files looked at per second.
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    max_files_rate: Option<f64>,
    /// Read with the idle I/O priority (the disk serves the scan only when Immich does not
    /// need it; honoured by the BFQ scheduler).
    #[arg(long)]
    idle_io: bool,
    /// Stop cleanly after this long, at a page boundary (exit 3, the report says how far it
    /// got). E.g. 1h, 90m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    time_limit: Option<std::time::Duration>,
}

/// `30s`, `2m`, `1h`, `500ms`, or a number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("wants a duration like 30s, 10m or 1h, got {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("wants a duration like 30s, 10m or 1h, got {s:?}")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("wants a duration above zero, got {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// `50M`, `1.5Gi`, `200k`, `100` (per second; a trailing `B` or `/s` is allowed).
pub(crate) fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches("/s").trim_end_matches('B');
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("wants a rate like 200, 50M or 1Gi, got {s:?}"))?;
    let k = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("wants a rate like 200, 50M or 1Gi, got {s:?}")),
    };
    let r = n * k;
    if !(r > 0.0 && r.is_finite()) {
        return Err(format!("wants a rate above zero, got {s:?}"));
    }
    Ok(r)
}

pub(crate) fn run(args: ScanArgs, ui: Ui) -> ExitCode {
    let format = args
        .format
        .unwrap_or_else(|| Format::for_output(args.output.as_deref()));
    let restore_list = restore_list_path(args.output.as_deref());
    if let Err(e) = crate::args::refuse_writes(
        &args.library,
        &[
            ("--output", args.output.as_deref()),
            ("--manifest", args.manifest.as_deref()),
            ("the restore list", Some(&restore_list)),
            ("--metrics", args.metrics.as_deref()),
        ],
    ) {
        return fail(e);
    }
    let mut steps = next_steps_context(&args.library, args.output.as_deref(), format);
    let mut opts = match scan_options(args.library) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    opts.level = args.level;
    opts.manifest = args.manifest;
    opts.verify_manifest = args.verify_manifest;
    opts.io_timeout = args.io_timeout;
    opts.io_depth = args.io_depth.map(usize::from);
    opts.max_read_rate = args.max_read_rate;
    opts.max_files_rate = args.max_files_rate;
    opts.idle_io = args.idle_io;
    opts.time_limit = args.time_limit;

    let mut sink = match ReportSink::new(format, args.output.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    steps.identity = opts.as_user.clone();
    sink.set_next_steps(steps, restore_list);
    // Progress only for a person watching stderr; the total costs one count(*) per table.
    if !ui.quiet && std::io::stderr().is_terminal() {
        opts.source.count_total = true;
        sink.set_meter(Some(progress::Meter::new(opts.level)));
    }
    sink.set_color(ui.color.enabled(std::io::stdout().is_terminal()));
    sink.set_cancel(opts.cancel.clone());
    let result = immich_integrity::scan(&opts, &mut sink);
    let metrics = |summary: Option<&immich_integrity::Summary>,
                   tally: Option<&immich_integrity::next_steps::Tally>| {
        if let Some(p) = &args.metrics {
            let text = crate::metrics::render(p, opts.level, summary, tally, crate::metrics::now());
            if let Err(e) = crate::metrics::write(p, &text) {
                eprintln!("immich-integrity: {e}");
            }
        }
    };
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            sink.abandon();
            metrics(None, None);
            return fail(e);
        }
    };
    metrics(Some(&summary), Some(sink.tally()));
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
        Completion::TimeLimit => {
            eprintln!(
                "immich-integrity: the time limit ran out: stopped after {} rows; the report \
                 holds them",
                summary.rows
            );
            ExitCode::from(Exit::Incomplete)
        }
        Completion::Complete if summary.not_checked > 0 => {
            eprintln!(
                "immich-integrity: {} files were not checked: their root did not answer (see \
                 the unreachable findings)",
                summary.not_checked
            );
            ExitCode::from(Exit::Incomplete)
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

/// Where the list of files only a backup has goes: beside the report (`NAME.restore.txt`), or
/// in the state folder when the report goes to standard output.
fn restore_list_path(output: Option<&Path>) -> PathBuf {
    match output {
        Some(o) => {
            let o = crate::state::absolute(o);
            let stem = o
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "report".into());
            o.with_file_name(format!("{stem}.restore.txt"))
        }
        None => crate::state::dir().join(format!(
            "restore-{}.txt",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        )),
    }
}

/// How the report's next steps spell their commands: this program, this run's connection,
/// roots and selection, and the report itself when a repair can read it back (`--from`).
fn next_steps_context(
    library: &LibraryArgs,
    output: Option<&Path>,
    format: Format,
) -> immich_integrity::next_steps::Context {
    let (library_args, selection_args) = crate::args::replay(library);
    let program = crate::args::program();
    let report = output
        .filter(|_| matches!(format, Format::Json | Format::Jsonl))
        .map(crate::state::absolute);
    immich_integrity::next_steps::Context {
        program,
        library_args,
        selection_args,
        report,
        restore_list: None,
        state_dir: crate::state::dir(),
        identity: None,
        roots: crate::args::replay_roots(library),
    }
}
