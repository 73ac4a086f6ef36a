//! `regenerate` and `refresh-metadata`: have Immich rebuild broken derivatives / re-read
//! metadata, through its API per owner (`--via api`) or by making the database say the files
//! are missing and starting the queue in "Missing" mode (`--via queue`).

use crate::args::{scan_options, LibraryArgs};
use crate::exit::{fail, Exit};
use crate::hints::render;
use crate::report::warn_unchecked;
use crate::text::esc;
use immich_integrity::api::{ApiKey, Client, Outcome, RetryPolicy};
use immich_integrity::regenerate::{self as regen, BatchStatus, Keys, Purpose};
use immich_integrity::Completion;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// POST /api/assets/jobs per owner (needs each owner's key).
    Api,
    /// Clear the broken rows (journaled) and start the queue in "Missing" mode (one admin key).
    Queue,
}

pub const REGEN_HELP: &str = "Keys: Immich lets only an asset's owner queue its jobs, so --via api \
needs a key per owner (--api-key-for OWNER=KEY, OWNER an id or e-mail address, or --api-keys-file); --api-key is used for owners \
without their own key. Prefer --api-keys-file or IMMICH_API_KEY over flags: command lines are visible \
to other local users. Keys are never printed.

Exit codes: 0 everything queued (or dry run), 1 some batches failed or were not sent, 2 could not run, \
130 interrupted.";

#[derive(clap::Args)]
pub struct RegenArgs {
    #[command(flatten)]
    library: LibraryArgs,
    /// Rebuild only the rows a saved `scan --format jsonl` report names: they are checked
    /// again now, and only files this check finds broken are rebuilt.
    #[arg(long, help_heading = crate::args::SEL)]
    from: Option<PathBuf>,
    /// Send the requests (and, with --via queue, change the database). Without it, only print
    /// the batches and requests.
    #[arg(long, help_heading = crate::args::SAFETY)]
    apply: bool,
    /// How to have Immich rebuild the files.
    #[arg(long, value_enum, default_value_t = Via::Api, help_heading = crate::args::SAFETY)]
    via: Via,
    /// Immich's URL, e.g. http://localhost:2283.
    #[arg(long, env = "IMMICH_SERVER", help_heading = crate::args::CONN)]
    server: Option<String>,
    /// API key used for owners without their own key; with --via queue, the admin key.
    #[arg(
        long,
        env = "IMMICH_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        help_heading = crate::args::CONN,
    )]
    api_key: Option<String>,
    /// A key for one owner's assets, the owner by id or e-mail address (repeatable).
    #[arg(long = "api-key-for", value_name = "OWNER=KEY", help_heading = crate::args::CONN)]
    api_key_for: Vec<String>,
    /// File of `OWNER=KEY` lines, OWNER an id or e-mail address (# comments allowed).
    #[arg(long, help_heading = crate::args::CONN)]
    api_keys_file: Option<PathBuf>,
    /// Asset ids per request (--via api) or rows per transaction (--via queue).
    #[arg(long, default_value_t = 500, help_heading = crate::args::SAFETY)]
    batch: usize,
    /// State file of accepted batches (JSON Lines, fsync'd): a rerun skips what it lists.
    /// Default: regenerate.state (refresh-metadata.state) in the state folder.
    #[arg(long, help_heading = crate::args::SAFETY)]
    state: Option<PathBuf>,
    /// Undo journal of --via queue (JSON Lines, fsync'd before each transaction). Default:
    /// regenerate.journal (refresh-metadata.journal) in the state folder.
    #[arg(long, help_heading = crate::args::SAFETY)]
    journal: Option<PathBuf>,
    /// Also write the final report as JSON here.
    #[arg(long, help_heading = crate::args::OUT)]
    report: Option<PathBuf>,
    /// Attempts per request (429, 5xx, timeouts and connection errors are retried).
    #[arg(long, default_value_t = 6, help_heading = crate::args::CONN)]
    attempts: u32,
    /// First retry delay in milliseconds (doubles after each failure, at most 60 s).
    #[arg(long, default_value_t = 500, help_heading = crate::args::CONN)]
    retry_delay_ms: u64,
    /// Seconds before one request times out.
    #[arg(long, default_value_t = 30, help_heading = crate::args::CONN)]
    timeout: u64,
}

pub fn run(args: RegenArgs, purpose: Purpose) -> ExitCode {
    if args.batch == 0 {
        return fail("--batch must be at least 1");
    }
    let name = match purpose {
        Purpose::Derivatives => "regenerate",
        Purpose::Metadata => "refresh-metadata",
    };
    let in_state = |flag: &Option<PathBuf>, ext: &str| match flag {
        Some(p) => crate::state::absolute(p),
        None => crate::state::dir().join(format!("{name}.{ext}")),
    };
    let (state, journal) = (
        in_state(&args.state, "state"),
        in_state(&args.journal, "journal"),
    );
    if let Err(e) = crate::args::refuse_writes(
        &args.library,
        &[
            ("--state", Some(&state)),
            ("--journal", Some(&journal)),
            ("--report", args.report.as_deref()),
        ],
    ) {
        return fail(e);
    }
    // Keys first: a bad key file should stop us before any scan.
    let mut keys = Keys::default();
    if let Some(k) = &args.api_key {
        match ApiKey::new(k.clone()) {
            Ok(k) => keys.fallback = Some(k),
            Err(e) => return fail(format!("--api-key: {e}")),
        }
    }
    for pair in &args.api_key_for {
        if let Err(e) = keys.add_pair(pair) {
            return fail(format!("--api-key-for: {e}"));
        }
    }
    if let Some(f) = &args.api_keys_file {
        if let Err(e) = keys.add_file(f) {
            return fail(e);
        }
    }
    let retry = RetryPolicy {
        attempts: args.attempts.max(1),
        base_delay: Duration::from_millis(args.retry_delay_ms),
        max_delay: Duration::from_secs(60),
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let client = match &args.server {
        Some(s) => match Client::new(s, retry) {
            Ok(c) => Some(c),
            Err(e) => return fail(e),
        },
        None if args.apply => return fail("--apply needs --server URL (or IMMICH_SERVER)"),
        None => None,
    };

    // Findings: from a saved report, or a scan now.
    let rest = Rest {
        via: args.via,
        apply: args.apply,
        batch: args.batch,
        state,
        journal,
        report: args.report,
        connection: crate::args::connection_only(&crate::args::replay(&args.library).0),
    };
    let in_state_dir = |p: &PathBuf| p.parent() == Some(crate::state::dir().as_path());
    if args.apply && (in_state_dir(&rest.state) || in_state_dir(&rest.journal)) {
        if let Err(e) = crate::state::ensure(&crate::state::dir()) {
            return fail(e);
        }
    }
    if args.apply {
        // Where this run keeps what it did, when no flag named the file.
        if args.state.is_none() && args.via == Via::Api {
            println!("state: {}", rest.state.display());
        }
        if args.journal.is_none() && args.via == Via::Queue {
            println!("journal: {}", rest.journal.display());
        }
    }
    // Findings: from a scan now, or the rows a saved report names, checked again now.
    let opts = match scan_options(args.library) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    // Queue mode deletes rows: a report only selects them, and plan_queue checks each one
    // itself, as deep as the report's fault needs (a `corrupt` line is decoded again).
    let selected_only = args.via == Via::Queue && args.from.is_some();
    if let Err(e) = keys.resolve_emails(&opts.source.db_url) {
        return fail(format!("--api-key-for: {e}"));
    }
    let checked = match &args.from {
        Some(from) if selected_only => {
            regen::selectors_from_report(from, purpose).map(|t| (t, None))
        }
        None => {
            let mut findings: Vec<immich_integrity::Finding> = Vec::new();
            immich_integrity::scan(&opts, &mut findings)
                .map(|s| (regen::targets(&findings, purpose), Some(s)))
        }
        Some(from) => regen::targets_from_report(from, purpose, &opts).map(|(t, s)| (t, Some(s))),
    };
    let targets = match checked {
        Ok((t, None)) => t,
        Ok((t, Some(s))) if s.completion == Completion::Complete => {
            warn_unchecked(&s, "queued");
            t
        }
        Ok((_, Some(s))) if s.completion == Completion::Interrupted => {
            eprintln!("immich-integrity: interrupted during the scan; nothing sent");
            return ExitCode::from(Exit::Interrupted);
        }
        Ok(_) => return fail("the scan did not complete; nothing sent"),
        Err(e) => return fail(e),
    };
    if selected_only {
        println!(
            "the report names {} file(s); each is checked again now, and only a file found \
             broken is cleared",
            targets.len()
        );
    }
    finish(&rest, purpose, targets, &opts, client, keys, selected_only)
}

/// The flags that matter after the findings are known.
struct Rest {
    via: Via,
    apply: bool,
    batch: usize,
    state: PathBuf,
    journal: PathBuf,
    report: Option<PathBuf>,
    /// How this run reached the database, for the undo hint.
    connection: Vec<String>,
}

impl Rest {
    /// The undo command for this run's journal, runnable as printed.
    fn undo_hint(&self) -> String {
        let mut argv = vec![
            crate::args::program(),
            "undo".to_string(),
            self.journal.to_string_lossy().into_owned(),
        ];
        argv.extend(self.connection.iter().cloned());
        immich_integrity::next_steps::shell_line(&argv)
    }
}

fn finish(
    rest: &Rest,
    purpose: Purpose,
    targets: Vec<regen::Target>,
    opts: &immich_integrity::ScanOptions,
    client: Option<Client>,
    keys: Keys,
    selected_only: bool,
) -> ExitCode {
    let cancel = opts.cancel.clone();
    let client = client.map(|c| c.with_cancel(cancel.clone()));
    let what = match purpose {
        Purpose::Derivatives => "derivative",
        Purpose::Metadata => "sidecar",
    };
    if !selected_only {
        println!("{} broken {what} file(s) to rebuild", targets.len());
    }
    let contact = client.as_ref().map(|c| (c.contact(), c.base().to_string()));
    let code = match rest.via {
        Via::Api => run_api(rest, targets, client, keys, cancel),
        Via::Queue => run_queue(rest, targets, opts, client, keys, cancel),
    };
    // A server that never answered is a run that could not happen (exit 2), said with its
    // address; nothing was retried against it.
    match contact {
        Some((c, base)) if c.never_reached() => fail(format!(
            "cannot reach Immich at {base}: nothing was queued (is the server running, and is \
             --server its address?)"
        )),
        _ => code,
    }
}

fn write_report<T: serde::Serialize>(path: &Option<PathBuf>, value: &T) -> Result<(), String> {
    let Some(p) = path else { return Ok(()) };
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(p, text + "\n").map_err(|e| format!("cannot write {}: {e}", p.display()))
}

fn run_api(
    rest: &Rest,
    targets: Vec<regen::Target>,
    client: Option<Client>,
    keys: Keys,
    cancel: Arc<AtomicBool>,
) -> ExitCode {
    let done = match regen::load_state(&rest.state, client.as_ref().map(|c| c.base())) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let already = targets
        .iter()
        .filter(|t| done.contains(&(t.job, t.asset_id.clone())))
        .map(|t| (t.job, t.asset_id.clone()))
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    let batches = regen::plan_batches(&targets, rest.batch, &done);
    if already > 0 {
        println!(
            "{already} asset(s) already queued according to {}; not sent again",
            rest.state.display()
        );
    }
    let url = client
        .as_ref()
        .map(|c| c.url("/api/assets/jobs"))
        .unwrap_or_else(|| "<--server>/api/assets/jobs".into());
    if !rest.apply {
        let mut without: std::collections::BTreeSet<&str> = Default::default();
        for (n, b) in batches.iter().enumerate() {
            let key = if keys.per_owner.contains_key(&b.owner_id) {
                "owner's key"
            } else if keys.fallback.is_some() {
                "--api-key"
            } else {
                without.insert(&b.owner_id);
                "NO KEY: would not be sent"
            };
            println!(
                "batch {}/{}: owner {} ({key}): POST {url} name={} ids={} body={} bytes",
                n + 1,
                batches.len(),
                b.owner_id,
                b.job,
                b.asset_ids.len(),
                b.body().len()
            );
        }
        for o in &without {
            println!("owner {o} has no API key: its assets would not be queued");
        }
        println!(
            "dry run: {} request(s) for {} asset(s); pass --apply to send them",
            batches.len(),
            batches.iter().map(|b| b.asset_ids.len()).sum::<usize>()
        );
        return ExitCode::from(Exit::Clean);
    }
    let client = client.expect("checked: --apply needs --server");
    let mut progress = |r: &regen::BatchResult| {
        let ids = r.asset_ids.len();
        match &r.status {
            BatchStatus::Accepted { attempts } => println!(
                "accepted: owner {} {} ids={ids} (attempts {attempts})",
                r.owner_id, r.job
            ),
            BatchStatus::Failed { reason, .. } => {
                let reason = esc(&render(reason)).into_owned();
                println!(
                    "failed: owner {} {} ids={ids}: {reason}",
                    esc(&r.owner_id),
                    r.job
                );
                if ids <= 5 {
                    println!("  assets: {}", r.asset_ids.join(", "));
                }
            }
            BatchStatus::Skipped { reason } => println!(
                "not sent: owner {} {} ids={ids}: {}",
                esc(&r.owner_id),
                r.job,
                esc(&render(reason))
            ),
        }
    };
    let run = regen::ApiRun {
        client: &client,
        keys: &keys,
        state: Some(&rest.state),
        cancel: Some(cancel),
        on_result: Some(&mut progress),
    };
    let report = match regen::run_api(run, &batches, already) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    for (owner, t) in &report.owners {
        println!(
            "owner {owner}: batches accepted {}, failed {}, skipped {} (assets {} / {} / {})",
            t.batches_accepted,
            t.batches_failed,
            t.batches_skipped,
            t.assets_accepted,
            t.assets_failed,
            t.assets_skipped
        );
    }
    for o in &report.owners_without_key {
        println!(
            "owner {o} has no API key: its assets were not queued (add --api-key-for {o}=KEY)"
        );
    }
    if let Err(e) = write_report(&rest.report, &report) {
        return fail(e);
    }
    if report.interrupted {
        eprintln!(
            "immich-integrity: interrupted; accepted batches are recorded in {}",
            rest.state.display()
        );
        return ExitCode::from(Exit::Interrupted);
    }
    ExitCode::from(if report.all_accepted() {
        Exit::Clean
    } else {
        Exit::Faults
    })
}

fn run_queue(
    rest: &Rest,
    targets: Vec<regen::Target>,
    opts: &immich_integrity::ScanOptions,
    client: Option<Client>,
    keys: Keys,
    cancel: Arc<AtomicBool>,
) -> ExitCode {
    if rest.apply && keys.fallback.is_none() {
        return fail("--via queue --apply needs an admin key: --api-key (or IMMICH_API_KEY)");
    }
    let db_url = opts.source.db_url.as_str();
    let plan = match regen::plan_queue(opts, &targets) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let verb = if rest.apply { "" } else { "would " };
    for s in &plan.steps {
        println!("{verb}{} of asset {}", step_text(s), esc(&s.asset_id));
    }
    for (t, why) in &plan.skipped {
        println!(
            "skipped {} of asset {}{}: {}",
            t.file,
            esc(&t.asset_id),
            t.db_path
                .as_deref()
                .map(|p| format!(" ({})", esc(p)))
                .unwrap_or_default(),
            esc(why)
        );
    }
    for effect in &plan.side_effects {
        println!("{}also: {effect}", if rest.apply { "" } else { "would " });
    }
    let base = client
        .as_ref()
        .map(|c| c.base().to_string())
        .unwrap_or_else(|| "<--server>".into());
    let body = immich_integrity::api::start_queue_body();
    for q in &plan.queues {
        println!(
            "{}PUT {base}/api/jobs/{q} body={} bytes {body}",
            if rest.apply { "" } else { "would send: " },
            body.len()
        );
    }
    if !rest.apply {
        println!(
            "dry run: {} row change(s), {} queue(s); pass --apply to change the database and start them",
            plan.steps.len(),
            plan.queues.len()
        );
        return ExitCode::from(Exit::Clean);
    }
    let client = client.expect("checked: --apply needs --server");
    let admin = keys.fallback.as_ref().expect("checked above");
    let report = match regen::apply_queue(
        db_url,
        &plan,
        &rest.journal,
        rest.batch,
        &client,
        admin,
        Some(cancel),
    ) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    for (s, why) in &report.skipped {
        println!(
            "skipped: {} of asset {}: {}",
            step_text(s),
            esc(&s.asset_id),
            esc(why)
        );
    }
    if report.interrupted {
        let rolled = report
            .interrupted_batch
            .map(|b| {
                format!("batch {b} was rolled back whole: nothing was committed for that batch; ")
            })
            .unwrap_or_default();
        eprintln!(
            "immich-integrity: interrupted: {rolled}{} row(s) in {} committed batch(es) stay \
             changed and no queue was started; undo with: {}",
            report.applied,
            report.batches,
            rest.undo_hint()
        );
        if let Err(e) = write_report(&rest.report, &report) {
            return fail(e);
        }
        return ExitCode::from(Exit::Interrupted);
    }
    println!(
        "changed {} row(s) in {} transaction(s) ({} had changed since planning); undo with: {}",
        report.applied,
        report.batches,
        report.unchanged,
        rest.undo_hint()
    );
    for (q, outcome) in &report.queues {
        match outcome {
            Outcome::Accepted { status, attempts } => {
                println!("started queue {q} ({status}, attempts {attempts})")
            }
            Outcome::Rejected {
                status, message, ..
            } => println!("queue {q} not started: {status}: {}", esc(&render(message))),
            Outcome::GaveUp { reason, attempts } => {
                println!(
                    "queue {q} not started after {attempts} attempts: {}",
                    esc(&render(reason))
                )
            }
            Outcome::Interrupted { .. } => println!("queue {q} not started: interrupted"),
        }
    }
    if let Err(e) = write_report(&rest.report, &report) {
        return fail(e);
    }
    if let Some(n) = report.rolled_back {
        println!(
            "the server refused a queue, so this run put its own changes back ({n} rows \
             restored from {}); nothing is left for you to undo",
            esc(&rest.journal.display().to_string())
        );
        return ExitCode::from(Exit::Faults);
    }
    if !report.all_started() {
        println!(
            "the rows are changed but not every queue was started: start it in Immich \
             (Administration > Jobs, \"Missing\") or restore the rows with: {}",
            rest.undo_hint()
        );
    }
    if report.interrupted {
        return ExitCode::from(Exit::Interrupted);
    }
    ExitCode::from(if report.all_started() {
        Exit::Clean
    } else {
        Exit::Faults
    })
}

/// One planned change in words; stored paths escaped.
fn step_text(s: &regen::QueueStep) -> String {
    match &s.change {
        regen::QueueChange::DeleteAssetFile { file, row, .. } => format!(
            "delete the {file} row ({})",
            esc(row.get("path").and_then(|p| p.as_str()).unwrap_or("?"))
        ),
        regen::QueueChange::BlankColumn { file, old, .. } => {
            format!("blank the {file} path ({})", esc(old))
        }
        regen::QueueChange::ClearThumbhash { .. } => "clear thumbhash".into(),
        regen::QueueChange::ClearMetadataExtractedAt { .. } => {
            "clear asset_job_status.metadataExtractedAt".into()
        }
    }
}
