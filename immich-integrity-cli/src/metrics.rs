//! `--metrics FILE`: the scan's numbers in Prometheus' text format, for node_exporter's
//! textfile collector. Written to a temp file beside FILE and renamed over it, so the collector
//! never reads half a file. Every metric carries the scan's `level`, so a nightly `exists` scan
//! and a weekly `hash` scan can write two files side by side.

use immich_integrity::next_steps::Tally;
use immich_integrity::{Completion, Level, Summary};
use std::fmt::Write as _;
use std::path::Path;

const LAST_SUCCESS: &str = "immich_integrity_last_success_timestamp_seconds";

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Exists => "exists",
        Level::Quick => "quick",
        Level::Full => "full",
        Level::Hash => "hash",
    }
}

/// A label value as the text format wants it (backslash, quote and newline escaped).
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The last success time an earlier run of this level wrote to `path`, if any.
fn previous_success(path: &Path, level: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let want = format!("{LAST_SUCCESS}{{level=\"{level}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
}

/// The metrics text of a run: `summary` is `None` when the scan could not run at all.
pub(crate) fn render(
    path: &Path,
    level: Level,
    summary: Option<&Summary>,
    tally: Option<&Tally>,
    now: f64,
) -> String {
    let lv = level_name(level);
    let mut t = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(t, "# HELP {name} {help}");
        let _ = writeln!(t, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(t, "{name}{{level=\"{lv}\"{labels}}} {value}");
        }
    };
    let complete = summary.is_some_and(|s| s.completion == Completion::Complete);
    let success = if complete {
        Some(now)
    } else {
        previous_success(path, lv)
    };
    metric(
        "immich_integrity_scan_complete",
        "1 when the last scan checked every selected row, else 0.",
        "gauge",
        vec![(String::new(), u8::from(complete).to_string())],
    );
    metric(
        "immich_integrity_last_run_timestamp_seconds",
        "When the last scan ended (Unix time).",
        "gauge",
        vec![(String::new(), format!("{now:.3}"))],
    );
    if let Some(ok) = success {
        metric(
            LAST_SUCCESS,
            "When a scan last completed (Unix time).",
            "gauge",
            vec![(String::new(), format!("{ok:.3}"))],
        );
    }
    let Some(s) = summary else {
        return t;
    };
    let mut per_fault = Vec::new();
    for (kind, faults) in &s.counts {
        for (fault, n) in faults {
            per_fault.push((
                format!(",fault=\"{}\",file=\"{}\"", label(fault), label(kind)),
                n.to_string(),
            ));
        }
    }
    metric(
        "immich_integrity_findings",
        "Faulty files the last scan found, by fault and file kind (mount: a missing mount).",
        "gauge",
        per_fault,
    );
    metric(
        "immich_integrity_faulty_files",
        "All faulty files the last scan found.",
        "gauge",
        vec![(String::new(), s.findings.to_string())],
    );
    if let Some(tally) = tally {
        let rows = tally
            .by_repair
            .iter()
            .map(|(r, n)| (format!(",repair=\"{}\"", label(r)), n.to_string()))
            .collect();
        metric(
            "immich_integrity_repairs",
            "Findings of the last scan by the repair they need.",
            "gauge",
            rows,
        );
        metric(
            "immich_integrity_mount_affected_files",
            "Files under missing mounts (not checked).",
            "gauge",
            vec![(String::new(), tally.mount_affected.to_string())],
        );
    }
    metric(
        "immich_integrity_files_checked",
        "Files the last scan looked at.",
        "gauge",
        vec![(String::new(), s.files_checked.to_string())],
    );
    metric(
        "immich_integrity_rows_checked",
        "Database rows the last scan read.",
        "gauge",
        vec![(String::new(), s.rows.to_string())],
    );
    metric(
        "immich_integrity_bytes_read",
        "File bytes the last scan read.",
        "gauge",
        vec![(String::new(), s.bytes_read.to_string())],
    );
    metric(
        "immich_integrity_scan_duration_seconds",
        "How long the last scan took.",
        "gauge",
        vec![(
            String::new(),
            format!("{:.3}", s.elapsed_ms as f64 / 1000.0),
        )],
    );
    t
}

/// Writes `text` to `path` through a temp file beside it, readable by the collector (0644).
pub(crate) fn write(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "metrics.prom".into());
    // node_exporter reads only `*.prom`: the temp name must not end so.
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let done = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done.map_err(|e| format!("cannot write the metrics to {}: {e}", path.display()))
}

/// Now, in Unix seconds.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
