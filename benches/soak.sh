#!/usr/bin/env bash
# Soak: SCANS scans back to back on one generated library while a writer process keeps
# inserting and updating asset rows (a live server), recording each scan's peak RSS, wall time
# and exit code. Fails when a scan crashes (exit code other than 0/1) or when the last scan's
# peak RSS is more than 10 % above the first one's (a leak across runs or growth with churn).
# Not part of the test suite: it takes minutes and wants the machine to itself.
# Usage: bash benches/soak.sh [ASSETS] [SCANS]   (default: 100000 20)
# Prints a table and writes target/bench/soak.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p immich-integrity-cli -p immich-fixtures
BIN=./target/release
ASSETS=${1:-100000}
SCANS=${2:-20}
mkdir -p target/bench

base=$(mktemp -d /tmp/immich-soak.XXXXXX); chmod 755 "$base"
fx=$($BIN/immich-fixture --generation v2.6 --assets "$ASSETS" --no-faults --out "$base")
get() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$fx" "$1"; }
db=$(get db_url); media=$(get media_root); dir=$(get dir)
maps=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(' '.join('--map %s=%s' % (c, h) for c, h in d['maps'] if c != d['container_root']))" "$fx")

# The writer: every round clones 50 random live assets under new ids (their files do not
# exist, so they are `missing` findings) and touches 500 random rows, until stopped.
writer() {
  while :; do
    psql "$db" -q -v ON_ERROR_STOP=1 -c "
      INSERT INTO asset SELECT (jsonb_populate_record(NULL::asset, to_jsonb(a) || jsonb_build_object(
          'id', gen_random_uuid(),
          'checksum', '\\x' || md5(random()::text) || substr(md5(random()::text), 1, 8),
          'originalPath', a.\"originalPath\" || '.soak'))).*
        FROM asset a WHERE a.\"deletedAt\" IS NULL ORDER BY random() LIMIT 50;
      UPDATE asset SET \"updatedAt\" = now()
        WHERE id IN (SELECT id FROM asset ORDER BY random() LIMIT 500);" >/dev/null || exit 1
    sleep 0.2
  done
}
writer & writer_pid=$!
cleanup() {
  kill "$writer_pid" 2>/dev/null || true; wait "$writer_pid" 2>/dev/null || true
  $BIN/immich-fixture drop "$(get db_name)" --dir "$dir" > /dev/null || true
  rm -rf "$base"
}
trap cleanup EXIT

# shellcheck disable=SC2206
scan=($BIN/immich-integrity scan --db-url "$db" --media-root "$media" $maps --format jsonl)
json=target/bench/soak.json
echo "[" > "$json"
printf '%-5s %8s %9s %6s %10s\n' scan wall_s rss_KiB exit rows
rss=()
for i in $(seq 1 "$SCANS"); do
  t=$(mktemp)
  set +e
  /usr/bin/time -f '%e %M %x' -o "$t" "${scan[@]}" > "$base/report.jsonl" 2>/dev/null
  set -e
  read -r wall kib code <<< "$(tail -n 1 "$t")"; rm -f "$t"
  rows=$(tail -n 1 "$base/report.jsonl" | python3 -c "import json,sys; print(json.load(sys.stdin)['rows'])" 2>/dev/null || echo "?")
  printf '%-5s %8s %9s %6s %10s\n' "$i" "$wall" "$kib" "$code" "$rows"
  [ "$i" = 1 ] || echo "," >> "$json"
  printf '{"scan":%s,"assets":%s,"wall_s":%s,"peak_rss_kib":%s,"exit":%s,"rows":"%s"}' \
    "$i" "$ASSETS" "$wall" "$kib" "$code" "$rows" >> "$json"
  rss+=("$kib")
  if [ "$code" != 0 ] && [ "$code" != 1 ]; then
    echo "]" >> "$json"; echo "soak: scan $i exited $code" >&2; exit 1
  fi
done
echo "]" >> "$json"
kill -0 "$writer_pid" 2>/dev/null || { echo "soak: the writer stopped early" >&2; exit 1; }
first=${rss[0]}; last=${rss[$((SCANS - 1))]}
python3 - "$first" "$last" <<'PY'
import sys
first, last = int(sys.argv[1]), int(sys.argv[2])
growth = (last - first) / first * 100
print(f"peak RSS: first {first} KiB, last {last} KiB ({growth:+.1f} %)")
sys.exit(0 if last <= first * 1.10 else 1)
PY
echo "wrote $json"
