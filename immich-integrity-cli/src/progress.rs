//! The progress bar on stderr: rows done of the counted total, files/s, MB/s (at the levels
//! that read file contents), faults so far and ETA. Only built when stderr is a terminal and
//! `-q` was not given; it never writes to stdout.

use immich_integrity::{Level, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

/// A live progress display for one scan.
pub struct Meter {
    bar: ProgressBar,
    started: Instant,
    show_bytes: bool,
    has_total: bool,
}

impl Meter {
    /// A spinner until the first page arrives with the total.
    pub fn new(level: Level) -> Meter {
        let level_name = match level {
            Level::Exists => "exists",
            Level::Quick => "quick",
            Level::Hash => "hash",
            Level::Full => "full",
        };
        // Built with its style before the first draw, so no default bar flashes up.
        let bar = ProgressBar::new_spinner()
            .with_style(
                ProgressStyle::with_template("{spinner} scan {prefix}: {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            )
            .with_prefix(level_name)
            .with_message("reading the database");
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(120));
        Meter {
            bar,
            started: Instant::now(),
            show_bytes: level != Level::Exists,
            has_total: false,
        }
    }

    /// Called after each checked page.
    pub fn update(&mut self, p: &Progress) {
        if let (Some(total), false) = (p.total_rows, self.has_total) {
            self.has_total = true;
            self.bar.set_length(total);
            self.bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} {pos}/{len} rows {msg} ETA {eta} [{wide_bar}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
        self.bar.set_position(p.rows);
        self.bar.set_message(rate_message(
            p,
            self.started.elapsed().as_secs_f64(),
            self.show_bytes,
        ));
    }

    /// Removes the bar from the terminal.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// `"1234 files/s 56.7 MB/s 3 faults"` (MB/s only when contents are read).
pub fn rate_message(p: &Progress, secs: f64, show_bytes: bool) -> String {
    let secs = secs.max(1e-3);
    let mut m = format!("{:.0} files/s", p.files_checked as f64 / secs);
    if show_bytes {
        m.push_str(&format!(" {:.1} MB/s", p.bytes_read as f64 / 1e6 / secs));
    }
    m.push_str(&format!(
        " {} fault{}",
        p.findings,
        if p.findings == 1 { "" } else { "s" }
    ));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_per_second() {
        let p = Progress {
            rows: 10,
            files_checked: 300,
            bytes_read: 50_000_000,
            findings: 1,
            ..Default::default()
        };
        assert_eq!(rate_message(&p, 2.0, false), "150 files/s 1 fault");
        assert_eq!(rate_message(&p, 2.0, true), "150 files/s 25.0 MB/s 1 fault");
    }
}
