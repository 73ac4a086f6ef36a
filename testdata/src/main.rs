//! `immich-fixture`: generate (or drop) an Immich fixture database and media tree.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use immich_fixtures::{generate, Fixture, FixtureSpec, Generation};

mod slowfs;

#[derive(Parser, Debug)]
#[command(
    name = "immich-fixture",
    about = "Generate an Immich database + media tree with injected faults and a ground truth",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Schema generation: v1.112, v1.135, v1.137, v2.6, v3.0 or v3.2 (v2.6 and later use
    /// Immich's own DDL from testdata/ddl/).
    #[arg(long, default_value = "v2.6")]
    generation: Generation,
    /// Approximate number of upload assets.
    #[arg(long, default_value_t = 100)]
    assets: usize,
    /// Number of users.
    #[arg(long, default_value_t = 3)]
    users: usize,
    /// Make a clean library (no injected faults).
    #[arg(long)]
    no_faults: bool,
    /// Also break file contents (truncated, bit-flipped, bomb, no moov, ...) on ten extra
    /// assets; the truth gives the scan level that finds each one.
    #[arg(long)]
    content_faults: bool,
    /// Pad every JPEG original to at least this many bytes (APP2 segments of random bytes),
    /// so originals weigh what camera files do (benches/scale.sh, HASH_ORIGINAL_BYTES).
    #[arg(long, default_value_t = 0)]
    original_bytes: u64,
    /// Random seed (layout and fault placement).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Base directory; the fixture goes into OUT/imf_<hex>/.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a real `pg_dumpall` dump of the fixture's database (and no other), gzipped,
    /// to this file (benches/restore.sh).
    #[arg(long)]
    dump_to: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Drop a fixture database (DROP DATABASE ... WITH (FORCE)); optionally remove its folder.
    Drop {
        /// Database name, e.g. imf_0123456789abcdef.
        db_name: String,
        /// Also remove this fixture folder.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Mount SRC at MNT through a passthrough FUSE filesystem that answers like a slow or hung
    /// network share; runs until SIGTERM/SIGINT, which unmount it (SIGUSR1: write --stats and
    /// count afresh).
    Fuse {
        /// Milliseconds added to every metadata operation (lookup, getattr, open, readdir, ...).
        #[arg(long, default_value_t = 1.0)]
        delay_ms: f64,
        /// Milliseconds added to every read.
        #[arg(long, default_value_t = 0.0)]
        read_delay_ms: f64,
        /// Never answer any operation on or below this folder (relative to SRC): a hung share.
        #[arg(long, value_name = "SUBDIR")]
        block_under: Option<PathBuf>,
        /// Seconds the kernel may cache entries and attributes (0: every stat reaches us).
        #[arg(long, default_value_t = 0.0)]
        attr_ttl: f64,
        /// Worker threads answering operations (the most delayed at once).
        #[arg(long, default_value_t = 256)]
        threads: usize,
        /// Write operation counts (JSON) here at exit and on SIGUSR1.
        #[arg(long)]
        stats: Option<PathBuf>,
        src: PathBuf,
        mnt: PathBuf,
    },
}

fn describe(f: &Fixture) -> serde_json::Value {
    serde_json::json!({
        "db_name": f.db_name,
        "db_url": f.db_url,
        "dir": f.dir,
        "media_root": f.media_root,
        "container_root": f.container_root,
        "maps": f.maps,
        "as_user": f.as_user,
        "truth_path": f.truth_path,
        "asset_rows": f.truth.asset_rows,
        "files_referenced": f.truth.files_referenced,
        "faults": f.truth.faults.len(),
    })
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Some(Cmd::Fuse { .. }) => unreachable!("served before the runtime starts"),
        Some(Cmd::Drop { db_name, dir }) => {
            immich_fixtures::drop_database(&immich_fixtures::base_pg_url(), &db_name).await?;
            if let Some(d) = dir {
                immich_fixtures::remove_tree(&d)?;
            }
            eprintln!("dropped {db_name}");
            Ok(())
        }
        None => {
            let out = cli
                .out
                .context("--out DIR is required to generate a fixture")?;
            let spec = FixtureSpec {
                generation: cli.generation,
                assets: cli.assets,
                users: cli.users,
                faults: !cli.no_faults,
                seed: cli.seed,
                content_faults: cli.content_faults,
                original_bytes: cli.original_bytes,
            };
            let t = std::time::Instant::now();
            let f = generate(&spec, &out).await?;
            eprintln!(
                "generated {} asset rows in {:.1} s",
                f.truth.asset_rows,
                t.elapsed().as_secs_f64()
            );
            if let Some(to) = &cli.dump_to {
                let t = std::time::Instant::now();
                immich_fixtures::backup::pg_dumpall_one(&f, to)?;
                eprintln!(
                    "dumped to {} in {:.1} s",
                    to.display(),
                    t.elapsed().as_secs_f64()
                );
            }
            println!("{}", serde_json::to_string_pretty(&describe(&f))?);
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Some(Cmd::Fuse {
        delay_ms,
        read_delay_ms,
        block_under,
        attr_ttl,
        threads,
        stats,
        src,
        mnt,
    }) = cli.cmd
    {
        let ms = |v: f64| std::time::Duration::from_secs_f64(v.max(0.0) / 1000.0);
        let opts = slowfs::SlowOptions {
            delay: ms(delay_ms),
            read_delay: ms(read_delay_ms),
            block: block_under,
            attr_ttl: std::time::Duration::from_secs_f64(attr_ttl.max(0.0)),
            threads,
            stats,
        };
        if let Err(e) = slowfs::serve(&src, &mnt, opts) {
            eprintln!("immich-fixture: error: {e:#}");
            std::process::exit(2);
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("immich-fixture: error: {e:#}");
        std::process::exit(2);
    }
}
