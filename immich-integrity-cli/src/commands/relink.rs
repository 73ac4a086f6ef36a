//! `relink`: point rows of `moved` files at where the files really are.

use crate::args::{scan_options, LibraryArgs};
use crate::exit::{fail, Exit};
use crate::hints::render;
use crate::report::warn_unchecked;
use crate::text::esc;
use immich_integrity::Completion;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct RelinkArgs {
    #[command(flatten)]
    library: LibraryArgs,
    /// Relink only the rows a saved `scan --format jsonl` (or `orphans --format jsonl`) report
    /// names: they are checked again now, and the new check decides every path.
    #[arg(long, help_heading = crate::args::SEL)]
    from: Option<PathBuf>,
    /// Change the database. Without it, only print the plan.
    #[arg(long, help_heading = crate::args::SAFETY)]
    apply: bool,
    /// Undo journal (JSON Lines, fsync'd before each batch). Default: relink.journal in the
    /// state folder ($IMMICH_INTEGRITY_STATE_DIR, $XDG_STATE_HOME/immich-integrity or
    /// ~/.local/state/immich-integrity).
    #[arg(long, help_heading = crate::args::SAFETY)]
    journal: Option<PathBuf>,
    /// Rows per transaction.
    #[arg(long, default_value_t = 500, help_heading = crate::args::SAFETY)]
    batch: usize,
    /// Plan a top folder whose moved rows all moved the same way (e.g. `upload/` ->
    /// `upload/upload/`) as one prefix rewrite once it has at least this many rows (0 = never).
    #[arg(long, default_value_t = 10, help_heading = crate::args::SAFETY)]
    prefix_min: usize,
}

pub(crate) fn run(args: RelinkArgs) -> ExitCode {
    use immich_integrity::relink;
    let journal = match args.journal.as_deref() {
        Some(p) => crate::state::absolute(p),
        None => crate::state::dir().join("relink.journal"),
    };
    // Even a dry run refuses: the same command line with --apply must not write on media.
    if let Err(e) = crate::args::refuse_writes(&args.library, &[("--journal", Some(&journal))]) {
        return fail(e);
    }
    // The undo hint repeats how this run reached the database (never a password).
    let (connection, _) = crate::args::replay(&args.library);
    let undo_hint = |run: &str| {
        let mut argv = vec![
            crate::args::program(),
            "undo".to_string(),
            journal.to_string_lossy().into_owned(),
            "--run".into(),
            run.to_string(),
        ];
        argv.extend(crate::args::connection_only(&connection));
        immich_integrity::next_steps::shell_line(&argv)
    };
    let opts = match scan_options(args.library) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let (steps, roots) = match &args.from {
        Some(report) => match relink::plan_from_report(report, &opts) {
            Ok((steps, s)) if s.completion == Completion::Complete => {
                warn_unchecked(&s, "relinked");
                (steps, s.roots)
            }
            Ok((_, s)) if s.completion == Completion::Interrupted => {
                eprintln!("immich-integrity: interrupted during the check; nothing relinked");
                return ExitCode::from(Exit::Interrupted);
            }
            Ok(_) => return fail("the check did not complete; nothing relinked"),
            Err(e) => return fail(e),
        },
        None => {
            let mut findings: Vec<immich_integrity::Finding> = Vec::new();
            match immich_integrity::scan(&opts, &mut findings) {
                Ok(s) if s.completion == Completion::Complete => {
                    warn_unchecked(&s, "relinked");
                    (relink::plan(&findings, &s.roots), s.roots)
                }
                Ok(s) if s.completion == Completion::Interrupted => {
                    eprintln!("immich-integrity: interrupted during the scan; nothing relinked");
                    return ExitCode::from(Exit::Interrupted);
                }
                Ok(_) => return fail("the scan did not complete; nothing relinked"),
                Err(e) => return fail(e),
            }
        }
    };
    let plan = relink::plan_prefixes(steps, args.prefix_min);
    // The same repair doctor gives for a folder restored one level too deep.
    for (folder, repair) in relink::nested_folders(&roots) {
        println!(
            "folder {} was restored one level too deep: {}",
            esc(&folder.to_string()),
            esc(&render(&repair))
        );
    }
    let print_rows = |rows: &[relink::RelinkStep]| {
        for s in rows {
            println!(
                "{} {} {}: {} -> {}",
                if args.apply { "relink" } else { "would relink" },
                s.file,
                esc(&s.id),
                esc(&s.old),
                esc(&s.new)
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
                        esc(&c.old_prefix),
                        esc(&c.new_prefix)
                    )
                }
                Err(why) => {
                    println!(
                        "prefix {} -> {} cannot be one rewrite ({}); its {} rows one by one:",
                        esc(&c.old_prefix),
                        esc(&c.new_prefix),
                        esc(&render(why)),
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
        return ExitCode::from(Exit::Clean);
    }
    // The state folder (default, or named by a printed next step) may not exist yet.
    if journal.parent() == Some(crate::state::dir().as_path()) {
        if let Err(e) = crate::state::ensure(&crate::state::dir()) {
            return fail(e);
        }
    }
    if args.journal.is_none() {
        println!("journal: {}", journal.display());
    }
    match relink::apply_plan(
        &opts.source.db_url,
        &plan,
        &journal,
        args.batch,
        &opts.cancel,
    ) {
        Ok(report) => {
            for (p, q, n) in &report.prefix_rewrites {
                println!("prefix rewrite {} -> {}, {n} rows", esc(p), esc(q));
            }
            for (p, q, why) in &report.prefix_fallbacks {
                println!(
                    "prefix {} -> {} was relinked row by row: {}",
                    esc(p),
                    esc(q),
                    esc(&render(why))
                );
            }
            for (s, why) in &report.skipped {
                println!(
                    "skipped {} {} ({}): {}",
                    s.file,
                    esc(&s.id),
                    esc(&s.old),
                    esc(&render(why))
                );
            }
            if report.interrupted {
                let rolled = report
                    .rolled_back
                    .map(|b| format!("batch {b} was rolled back whole; "))
                    .unwrap_or_default();
                eprintln!(
                    "immich-integrity: interrupted: {rolled}{} rows in {} committed batches stay \
                     relinked (the journal says so); undo with: {}",
                    report.applied.len(),
                    report.batches,
                    undo_hint(&report.run)
                );
                return ExitCode::from(Exit::Interrupted);
            }
            println!(
                "relinked {} rows in {} batches, skipped {}; undo with: {}",
                report.applied.len(),
                report.batches,
                report.skipped.len(),
                undo_hint(&report.run)
            );
            ExitCode::from(if report.skipped.is_empty() {
                Exit::Clean
            } else {
                Exit::Faults
            })
        }
        Err(e) => fail(e),
    }
}
