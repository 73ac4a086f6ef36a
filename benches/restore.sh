#!/usr/bin/env bash
# Restore-test benchmark: on one clean generated library per size, a real pg_dumpall dump of
# its database (gzipped, as Immich writes them) is checked against the media tree with
# `restore-test --backend stream` (no PostgreSQL: COPY blocks spilled to sorted runs on disk)
# and `--backend postgres` (loaded into a scratch database on the local server, scanned,
# dropped), next to a plain `scan` of the live database. Each row gives wall time and the
# tool's peak RSS (/usr/bin/time). The postgres backend's loading and querying happen in the
# server, whose memory is not in that figure.
# Usage: bash benches/restore.sh [SIZES...]   (default: 10000 100000; 1000000 works too, it
#        takes about 8 minutes to generate and ~19 GB of disk)
# Prints a table and writes target/bench/restore.json. SCRATCH_DB overrides the server URL
# for the postgres backend (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p immich-integrity-cli -p immich-fixtures
BIN=${CARGO_TARGET_DIR:-./target}/release
mkdir -p target/bench
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
json=target/bench/restore.json; echo "[" > "$json"; first=1
TMPBASE=${TMPDIR:-/tmp}
SCRATCH_DB=${SCRATCH_DB:-postgres://postgres@127.0.0.1:5432/postgres}

# wall seconds, cpu seconds, peak RSS KiB, exit status of one command (output discarded)
measure() {
  local t s; t=$(mktemp)
  s=0; /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" > /dev/null 2>&1 || s=$?
  tail -n 1 "$t" | awk -v s="$s" '{printf "%s %.2f %s %s", $1, $2+$3, $4, s}'; rm -f "$t"
}

printf '%-8s %-16s %8s %8s %8s %6s %10s\n' assets what wall_s cpu_s rss_MiB exit dump_MB
for n in "${sizes[@]}"; do
  base=$(mktemp -d "$TMPBASE/immich-restore-bench.XXXXXX"); chmod 755 "$base"
  dumpf="$base/immich-db-backup-bench.sql.gz"
  gen_start=$(date +%s)
  fx=$($BIN/immich-fixture --generation v2.6 --assets "$n" --no-faults --out "$base" \
    --dump-to "$dumpf")
  gen_s=$(($(date +%s) - gen_start))
  get() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$fx" "$1"; }
  db=$(get db_url); media=$(get media_root); dbname=$(get db_name); rows=$(get asset_rows)
  maps=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(' '.join('--map %s=%s' % (c, h) for c, h in d['maps'] if c != d['container_root']))" "$fx")
  dump_mb=$(($(stat -c %s "$dumpf") / 1000000))
  # shellcheck disable=SC2206
  rt=($BIN/immich-integrity restore-test --dump "$dumpf" --media "$media" $maps --format json)
  # shellcheck disable=SC2206
  scan=($BIN/immich-integrity scan --db-url "$db" --media-root "$media" $maps --format jsonl)
  "${scan[@]}" > /dev/null || true   # warm the caches
  unset r; declare -A r
  whats=(scan_live stream postgres)
  r[scan_live]=$(measure "${scan[@]}")
  r[stream]=$(measure "${rt[@]}" --backend stream)
  r[postgres]=$(measure "${rt[@]}" --backend postgres --scratch-db "$SCRATCH_DB")
  for k in "${whats[@]}"; do
    read -r wall cpu rss status <<< "${r[$k]}"
    printf '%-8s %-16s %8s %8s %8s %6s %10s\n' "$n" "$k" "$wall" "$cpu" "$((rss/1024))" "$status" "$dump_mb"
    [ $first = 1 ] || echo "," >> "$json"; first=0
    printf '{"assets":%s,"rows":%s,"what":"%s","wall_s":%s,"cpu_s":%s,"peak_rss_kib":%s,"exit":%s,"dump_bytes":%s}' \
      "$n" "$rows" "$k" "$wall" "$cpu" "$rss" "$status" "$(stat -c %s "$dumpf")" >> "$json"
  done
  echo "         library: $rows rows, generated and dumped in ${gen_s} s"
  $BIN/immich-fixture drop "$dbname" --dir "$base" > /dev/null 2>&1 || true
  rm -rf "$base"
done
echo "]" >> "$json"
echo "wrote $json"
