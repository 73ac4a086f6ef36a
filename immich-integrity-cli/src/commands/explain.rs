//! `immich-integrity explain-report`: our verdict on each row of Immich v3's own
//! `integrity_report` table (read-only).

use crate::args::{scan_options, LibraryArgs};
use crate::exit::{fail, Exit};
use crate::hints;
use crate::report::Format;
use immich_integrity::explain::{explain_report, ExplainReport, Explanation};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXPLAIN_HELP: &str = "Verdicts: moved, nested (upload/upload restore), stale_prefix, \
permission_denied, mount_missing, gone, checksum_of_path (external library, Immich #29219), \
bitrot, already_healthy (a stale row: Immich's Refresh clears it), untracked, damaged, \
unknown_type. A missing_file row and the untracked_file row of its found copy name each other \
(paired_row).

Example:
  immich-integrity explain-report --env-file /opt/immich/.env --as-user 1000:1000 --format jsonl

Exit codes: 0 every row is already_healthy (or there are none), 1 some row is a real fault,
2 could not run (no integrity_report table: Immich before v3.0; DB unreachable; bad flag).";

#[derive(clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    library: LibraryArgs,
    /// Report format: table, json, jsonl (one verdict per line, then a summary line) or csv.
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Table, help_heading = crate::args::OUT)]
    format: Format,
    /// Write the report here (atomically) instead of standard output.
    #[arg(short = 'o', long, help_heading = crate::args::OUT)]
    output: Option<PathBuf>,
}

const CSV_HEADER: &str = "report_id,report_type,path,asset_id,file_asset_id,file,verdict,\
repair,relink_to,found_at,paired_row,scan_fault,detail";

use crate::text::{csv_cell as csv_field, esc};

fn csv_row(e: &Explanation) -> String {
    let opt = |o: &Option<String>| o.as_deref().map(csv_field).unwrap_or_default();
    [
        csv_field(&e.report_id),
        csv_field(&e.report_type),
        csv_field(&e.path),
        opt(&e.asset_id),
        opt(&e.file_asset_id),
        e.file.map(|k| k.as_str().to_string()).unwrap_or_default(),
        e.verdict.as_str().to_string(),
        e.repair.as_str().to_string(),
        opt(&e.relink_to),
        opt(&e.found_at),
        opt(&e.paired_row),
        e.scan_fault
            .map(|f| f.as_str().to_string())
            .unwrap_or_default(),
        csv_field(&e.detail),
    ]
    .join(",")
}

fn render(report: &ExplainReport, format: Format) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    let s = &report.summary;
    match format {
        Format::Jsonl => {
            for e in &report.explanations {
                serde_json::to_writer(&mut out, e)?;
                out.push(b'\n');
            }
            serde_json::to_writer(&mut out, s)?;
            out.push(b'\n');
        }
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({"explanations": report.explanations, "summary": s}),
            )?;
            out.push(b'\n');
        }
        Format::Csv => {
            let mut t = format!("{CSV_HEADER}\n");
            for e in &report.explanations {
                t.push_str(&csv_row(e));
                t.push('\n');
            }
            out.extend_from_slice(t.as_bytes());
        }
        Format::Table => {
            let mut t = String::new();
            if !report.explanations.is_empty() {
                t.push_str(&format!("{:<18} {:>8}\n", "VERDICT", "ROWS"));
                for (v, n) in &s.verdicts {
                    t.push_str(&format!("{v:<18} {n:>8}\n"));
                }
                let mut groups: BTreeMap<&str, Vec<&Explanation>> = BTreeMap::new();
                for e in &report.explanations {
                    groups.entry(e.verdict.as_str()).or_default().push(e);
                }
                for (v, es) in groups {
                    t.push_str(&format!("\n{v} ({}):\n", es.len()));
                    for e in es {
                        t.push_str(&format!(
                            "  {} {}  {}  asset {}\n",
                            esc(&e.report_id),
                            esc(&e.report_type),
                            esc(&e.path),
                            esc(e.asset_id.as_deref().unwrap_or("-"))
                        ));
                        if let Some(p) = &e.paired_row {
                            t.push_str(&format!("      paired with row {p}\n"));
                        }
                        if let Some(r) = &e.relink_to {
                            t.push_str(&format!("      relink to {}\n", esc(r)));
                        }
                        t.push_str(&format!(
                            "      {} -> {}\n",
                            esc(&e.detail),
                            e.repair.as_str()
                        ));
                    }
                }
                t.push('\n');
            }
            t.push_str(&format!(
                "immich-integrity: {}, {} integrity_report rows, {} faults, {} stale\n",
                match &s.immich_version {
                    Some(v) => format!("Immich v{v} (schema {})", s.schema),
                    None => format!("schema {}", s.schema),
                },
                s.rows,
                s.faults,
                s.rows - s.faults
            ));
            out.extend_from_slice(t.as_bytes());
        }
    }
    Ok(out)
}

pub fn run_explain(args: ExplainArgs) -> ExitCode {
    if let Err(e) =
        crate::args::refuse_writes(&args.library, &[("--output", args.output.as_deref())])
    {
        return fail(e);
    }
    let opts = match scan_options(args.library) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    if opts.source.is_filtered() || opts.source.shard.is_some() {
        return fail(
            "explain-report reads every integrity_report row: --owner, --library, --kind, \
             --limit, --since and --shard do not apply",
        );
    }
    let mut report = match explain_report(&opts) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    for e in &mut report.explanations {
        e.detail = hints::render(&e.detail);
    }
    let bytes = match render(&report, args.format) {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot render the report: {e}")),
    };
    if let Err(e) = crate::report::deliver(args.output.as_deref(), &bytes) {
        return fail(e);
    }
    if args.format == Format::Csv {
        let s = &report.summary;
        eprintln!(
            "immich-integrity: schema {}, {} integrity_report rows, {} faults",
            s.schema, s.rows, s.faults
        );
    }
    ExitCode::from(if report.summary.is_clean() {
        Exit::Clean
    } else {
        Exit::Faults
    })
}
