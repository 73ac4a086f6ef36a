#!/usr/bin/env bash
# The whole test suite: installs what is missing, then builds the binaries the CLI tests run
# and runs every test against the local PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --bins --examples
cargo test --workspace --no-fail-fast
