//! `immich-integrity orphans`: list files under the media root that no row references.

use crate::args::{scan_options, LibraryArgs};
use crate::exit::{fail, Exit};
use crate::text::esc;
use immich_integrity::orphans::{find_orphans, Orphan, OrphanReport};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrphanFormat {
    Table,
    Json,
    Jsonl,
    /// path,rel,size,moved_row,moved_file,relink_to per orphan; the summary goes to stderr.
    Csv,
}

#[derive(clap::Args)]
pub struct OrphansArgs {
    #[command(flatten)]
    library: LibraryArgs,
    /// Report format: jsonl (one orphan per line, then a summary line), json, csv or table.
    #[arg(short = 'f', long, value_enum, default_value_t = OrphanFormat::Table, help_heading = crate::args::OUT)]
    format: OrphanFormat,
    /// Write the report here (atomically) instead of standard output.
    #[arg(short = 'o', long, help_heading = crate::args::OUT)]
    output: Option<PathBuf>,
}

fn render(report: &OrphanReport, format: OrphanFormat) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        OrphanFormat::Jsonl => {
            // Each object names its type, as a scan report's do.
            for o in &report.orphans {
                serde_json::to_writer(&mut out, &Typed::new("orphan", o))?;
                out.push(b'\n');
            }
            serde_json::to_writer(&mut out, &Typed::new("summary", &report.summary))?;
            out.push(b'\n');
        }
        OrphanFormat::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({"orphans": report.orphans, "summary": report.summary}),
            )?;
            out.push(b'\n');
        }
        OrphanFormat::Csv => {
            use crate::text::csv_cell;
            let mut t = String::from("path,rel,size,moved_row,moved_file,relink_to\n");
            for o in &report.orphans {
                let c = o.moved_candidate.as_ref();
                t.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    csv_cell(&o.path.to_string_lossy()),
                    csv_cell(&o.rel),
                    o.size,
                    c.map(|c| csv_cell(&c.row_id)).unwrap_or_default(),
                    c.map(|c| c.file.as_str()).unwrap_or_default(),
                    c.map(|c| csv_cell(&c.relink_to)).unwrap_or_default(),
                ));
            }
            out.extend_from_slice(t.as_bytes());
        }
        OrphanFormat::Table => {
            let s = &report.summary;
            let mut t = format!(
                "{} untracked files under {} ({} files walked, {} referenced); \
                 {} match a row whose file is missing\n",
                s.orphans,
                s.media_root.display(),
                s.files_walked,
                s.referenced_files,
                s.moved_candidates
            );
            t.push_str(&format!(
                "skipped: {} .immich markers, {} temporary files, {} not regular files\n",
                s.excluded_markers, s.excluded_temporary, s.not_regular
            ));
            for o in &report.orphans {
                t.push_str(&table_line(o));
            }
            out.extend_from_slice(t.as_bytes());
        }
    }
    Ok(out)
}

/// `{"type": ..., ...the value's fields}`.
#[derive(serde::Serialize)]
struct Typed<'a, T: serde::Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    value: &'a T,
}

impl<'a, T: serde::Serialize> Typed<'a, T> {
    fn new(kind: &'static str, value: &'a T) -> Self {
        Typed { kind, value }
    }
}

fn table_line(o: &Orphan) -> String {
    match &o.moved_candidate {
        Some(c) => format!(
            "{}  {} bytes  moved {} of {}: relink {} -> {}\n",
            esc(&o.path.to_string_lossy()),
            o.size,
            c.file,
            esc(&c.row_id),
            esc(&c.db_path),
            esc(&c.relink_to)
        ),
        None => format!(
            "{}  {} bytes  untracked\n",
            esc(&o.path.to_string_lossy()),
            o.size
        ),
    }
}

pub fn run_orphans(args: OrphansArgs) -> ExitCode {
    if let Err(e) =
        crate::args::refuse_writes(&args.library, &[("--output", args.output.as_deref())])
    {
        return fail(e);
    }
    let opts = match scan_options(args.library) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let report = match find_orphans(&opts) {
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
    ExitCode::from(if report.orphans.is_empty() {
        Exit::Clean
    } else {
        Exit::Faults
    })
}
