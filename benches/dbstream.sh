#!/usr/bin/env bash
# The database stream of an unfiltered scan: the three id-ordered cursors merged in Rust
# (default) against the one join query filtered scans use (IMMICH_INTEGRITY_JOIN_STREAM=1,
# or the hidden `--join-stream` option, forces it). On one generated v2.6 library, ROUNDS
# rounds (default 3) of, alternately for each stream:
#   drain  examples/drain_source: the rows alone, no file checks;
#   exists `scan --level exists` (warm caches);
# each with the scanner's wall time, CPU (user + system) and peak RSS, and the CPU of the
# PostgreSQL backends serving it (utime + stime of each backend the tool opened, read from
# /proc/<pid>/stat every 20 ms while it runs: the backend is found by its application_name,
# so other sessions on the same server are not counted); then `find ROOT -type f`, the floor.
# Usage: bash benches/dbstream.sh [ASSETS]   (default 100000; 1000000 takes about 8 minutes
#        to generate, ~19 GB of disk and ~5 M inodes, checked first)
# KEEP_FIXTURE=1 keeps the library (and its database); FIXTURE=FILE measures an existing one
# (the JSON immich-fixture printed, e.g. a kept fixture.json) and leaves it in place.
# PostgreSQL must run on this machine (its backends' /proc entries are read).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
rounds=${ROUNDS:-3}
cargo build --release -q -p immich-integrity-cli -p immich-fixtures
cargo build --release -q -p immich-integrity --example drain_source
BIN=${CARGO_TARGET_DIR:-target}/release
TMPBASE=${TMPDIR:-/tmp}

if [ -n "${FIXTURE:-}" ]; then
  fx=$(cat "$FIXTURE")
else
  need_kb=$((n * 20 + 1048576)); need_inodes=$((n * 5 + 100000))
  avail_kb=$(df -Pk "$TMPBASE" | awk 'NR==2 {print $4}')
  avail_inodes=$(df -Pi "$TMPBASE" | awk 'NR==2 {print $4}')
  if [ "$avail_kb" -lt "$need_kb" ] || [ "$avail_inodes" -lt "$need_inodes" ]; then
    echo "$n assets need ~$((need_kb / 1048576)) GiB and $need_inodes inodes in $TMPBASE" >&2
    exit 1
  fi
  base=$(mktemp -d "$TMPBASE/immich-dbstream.XXXXXX"); chmod 755 "$base"
  gen_start=$(date +%s)
  fx=$($BIN/immich-fixture --generation v2.6 --assets "$n" --no-faults --out "$base")
  echo "generated $n assets in $(($(date +%s) - gen_start)) s"
fi
get() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$fx" "$1"; }
db=$(get db_url); media=$(get media_root); dir=$(get dir); rows=$(get asset_rows)
maps=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(' '.join('--map %s=%s' % (c, h) for c, h in d['maps'] if c != d['container_root']))" "$fx")
# shellcheck disable=SC2206
scan=($BIN/immich-integrity scan --db-url "$db" --media-root "$media" $maps --format jsonl --level exists)
drain=($BIN/examples/drain_source "$db")

# Runs a command; prints "wall_s cpu_s rss_MiB backend_cpu_s".
measure() {
  python3 - "$db" "$@" <<'PY'
import os, subprocess, sys, time
db, cmd = sys.argv[1], sys.argv[2:]
tick = os.sysconf("SC_CLK_TCK")
dbname = subprocess.run(["psql", db, "-Atc", "SELECT current_database()"],
                        capture_output=True, text=True, check=True).stdout.strip()
find_pids = ["psql", db, "-Atc",
             "SELECT pid FROM pg_stat_activity WHERE application_name = 'immich-integrity' "
             f"AND datname = '{dbname}'"]

def cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick
    except (OSError, IndexError, ValueError):
        return None

seen = {}  # backend pid -> its last CPU reading
start = time.monotonic()
child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
last_lookup = 0.0
while True:
    done, status, ru = os.wait4(child.pid, os.WNOHANG)
    now = time.monotonic()
    if done:
        break
    # New backends (a reconnect, another phase): often until the first is seen, then seldom
    # (each look-up is a psql process and a backend of its own).
    if now - last_lookup > (2.0 if seen else 0.1):
        last_lookup = now
        out = subprocess.run(find_pids, capture_output=True, text=True).stdout.split()
        for p in out:
            seen.setdefault(int(p), 0.0)
    for p in list(seen):
        c = cpu(p)
        if c is not None:
            seen[p] = c
    time.sleep(0.02)
wall = time.monotonic() - start
print(f"{wall:.2f} {ru.ru_utime + ru.ru_stime:.2f} {ru.ru_maxrss / 1024:.0f} {sum(seen.values()):.2f}")
PY
}

echo "library: $rows asset rows"
"${scan[@]}" > /dev/null || true; find "$dir" -type f > /dev/null   # warm the caches
printf '%-7s %-7s %5s %8s %8s %8s %11s\n' what stream round wall_s cpu_s rss_MiB backend_cpu_s
for r in $(seq 1 "$rounds"); do
  for what in drain exists; do
    for stream in join merged; do
      if [ "$what" = drain ]; then cmd=("${drain[@]}"); else cmd=("${scan[@]}"); fi
      if [ "$stream" = join ]; then export IMMICH_INTEGRITY_JOIN_STREAM=1; else unset IMMICH_INTEGRITY_JOIN_STREAM; fi
      read -r w c m b < <(measure "${cmd[@]}")
      printf '%-7s %-7s %5s %8s %8s %8s %11s\n' "$what" "$stream" "$r" "$w" "$c" "$m" "$b"
    done
  done
  unset IMMICH_INTEGRITY_JOIN_STREAM
  t=$(mktemp)
  /usr/bin/time -f '%e %U %S %M' -o "$t" find "$dir" -type f > /dev/null
  tail -n 1 "$t" | awk -v r="$r" '{printf "%-7s %-7s %5s %8s %8.2f %8.0f %11s\n", "find", "-", r, $1, $2+$3, $4/1024, "-"}'
  rm -f "$t"
done

if [ -n "${FIXTURE:-}" ]; then
  :
elif [ "${KEEP_FIXTURE:-0}" = 1 ]; then
  echo "$fx" > "$base/fixture.json"
  echo "kept: $base/fixture.json (drop it: immich-fixture drop $(get db_name) --dir $dir)"
else
  $BIN/immich-fixture drop "$(get db_name)" --dir "$dir" > /dev/null; rm -rf "$base"
fi
