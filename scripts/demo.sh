#!/usr/bin/env bash
# Generates a small Immich library (database on the local PostgreSQL + media tree in a temp
# folder, with a few injected faults) and scans it, printing the human summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p immich-integrity-cli -p immich-fixtures
GENERATION=${GENERATION:-v2.6}
ASSETS=${ASSETS:-200}
base=$(mktemp -d /tmp/immich-integrity-demo.XXXXXX)
chmod 755 "$base"
fixture=$(./target/release/immich-fixture --generation "$GENERATION" --assets "$ASSETS" --out "$base")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$fixture" "$1"; }
maps=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(' '.join('--map %s=%s' % (c, h) for c, h in d['maps'] if c != d['container_root']))" "$fixture")
db_name=$(field db_name)
cleanup() { ./target/release/immich-fixture drop "$db_name" --dir "$(field dir)" >/dev/null 2>&1 || true; rm -rf "$base"; }
trap cleanup EXIT
echo "Demo library: $(field asset_rows) assets ($GENERATION schema) in database $db_name, media in $(field media_root)"
echo "+ immich-integrity scan --db-url $(field db_url) --media-root $(field media_root) $maps --as-user $(field as_user)"
set +e
# shellcheck disable=SC2086
./target/release/immich-integrity scan --db-url "$(field db_url)" --media-root "$(field media_root)" $maps --as-user "$(field as_user)"
code=$?
set -e
echo "exit code $code (0 clean, 1 faults found, 2 could not run)"
[ "$code" -le 1 ]
