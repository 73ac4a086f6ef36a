#!/usr/bin/env bash
# NAS benchmark: one generated library served through the slow FUSE layer
# (`immich-fixture fuse`: 1 ms added to every metadata operation, answered by a multithreaded
# server so operations overlap, no entry or attribute caching, as a share mounted `noac`).
# Measures, once each:
#   exists        our `scan --level exists`, default (in-flight count adapts to the storage)
#   exists_64     our `scan --level exists --io-depth 64`
#   quick         our `scan --level quick`, default
#   immich        Immich's own missing-file check (benches/immich_missing_files.mjs: fs.stat,
#                 Promise.all over batches of 10,000; libuv's 4 threads)
# and the limits files x latency / in-flight (and metadata operations x latency / in-flight,
# as counted by the FUSE layer) for 64 in flight.
# Usage: bash benches/nas.sh [ASSETS]   (default 20000). DELAY_MS=1 changes the latency;
# IMMICH=0 skips the (slow) Immich row.
# Prints a table and writes target/bench/nas.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v node > /dev/null || { echo "nas.sh needs node (Node.js 18+)"; exit 1; }
cargo build --release -q -p immich-integrity-cli -p immich-fixtures
BIN=$(realpath "${CARGO_TARGET_DIR:-target}")/release
mkdir -p target/bench
n=${1:-20000}; delay=${DELAY_MS:-1}
TMPBASE=${TMPDIR:-/tmp}
base=$(mktemp -d "$TMPBASE/immich-nas.XXXXXX"); chmod 755 "$base"
fx=$($BIN/immich-fixture --generation v2.6 --assets "$n" --no-faults --out "$base")
get() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$fx" "$1"; }
db=$(get db_url); dir=$(get dir); files=$(get files_referenced); rows=$(get asset_rows)
mnt="$base/mnt"; mkdir -p "$mnt"; stats="$base/stats.json"
$BIN/immich-fixture fuse --delay-ms "$delay" --attr-ttl 0 --threads 256 --stats "$stats" \
  "$dir" "$mnt" 2> "$base/fuse.log" &
fuse_pid=$!
cleanup() {
  kill "$fuse_pid" 2> /dev/null || true; sleep 1
  fusermount3 -uz "$mnt" 2> /dev/null || umount -l "$mnt" 2> /dev/null || true
  $BIN/immich-fixture drop "$(get db_name)" --dir "$dir" > /dev/null 2>&1 || true
  rm -rf "$base"
}
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q " $mnt " /proc/self/mountinfo && break; sleep 0.1; done
grep -q " $mnt " /proc/self/mountinfo || { echo "the FUSE layer did not mount"; exit 1; }
# Every root of the fixture, seen through the mount.
read -r media maps < <(python3 - "$fx" "$mnt" <<'PY'
import json, sys
d, mnt = json.loads(sys.argv[1]), sys.argv[2]
move = lambda p: mnt + p[len(d["dir"]):]
maps = " ".join("--map %s=%s" % (c, move(h)) for c, h in d["maps"] if c != d["container_root"])
print(move(d["media_root"]), maps)
PY
)
# shellcheck disable=SC2206
scan=($BIN/immich-integrity scan --db-url "$db" --media-root "$media" $maps --format jsonl)
# The paths Immich's check stats (originals and asset files of live assets), as host paths
# through the mount.
psql "$db" -Atc "SELECT \"originalPath\" FROM asset WHERE \"deletedAt\" IS NULL UNION ALL
  SELECT f.path FROM asset_file f JOIN asset a ON a.id = f.\"assetId\" WHERE a.\"deletedAt\" IS NULL" \
  | python3 -c "
import json, sys
d, mnt = json.loads(sys.argv[1]), sys.argv[2]
maps = sorted(d['maps'], key=lambda m: -len(m[0]))
for line in sys.stdin:
    p = line.rstrip('\n')
    for c, h in maps:
        if p == c or p.startswith(c.rstrip('/') + '/'):
            print(mnt + h[len(d['dir']):] + p[len(c.rstrip('/')):]); break
" "$fx" "$mnt" > "$base/paths.txt"
immich_files=$(wc -l < "$base/paths.txt")

# One run: wall seconds, CPU seconds, and the FUSE layer's counts for it.
run() {
  local name=$1; shift
  kill -USR1 "$fuse_pid"; sleep 0.3   # count afresh
  local t; t=$(mktemp)
  /usr/bin/time -f '%e %U %S' -o "$t" "$@" > "$base/$name.out" 2> "$base/$name.err" || true
  kill -USR1 "$fuse_pid"; sleep 0.3
  cp "$stats" "$base/$name.stats"
  read -r wall u s < <(tail -n 1 "$t"); rm -f "$t"
  python3 - "$name" "$wall" "$u" "$s" "$base/$name.stats" "$base/$name.out" <<'PY' >> "$base/results.jsonl"
import json, sys
name, wall, u, s, st, out = sys.argv[1:]
st = json.load(open(st))
lines = open(out).read().strip().splitlines()
last = json.loads(lines[-1]) if lines else {}
print(json.dumps({"what": name, "wall_s": float(wall), "cpu_s": float(u) + float(s),
  "metadata_ops": st["metadata_ops"], "mean_in_flight": round(st["mean_in_flight"], 1),
  "max_in_flight": st["max_in_flight"], "files": last.get("files_checked", last.get("files")),
  "io_depth": last.get("io_depth"), "findings": last.get("findings", last.get("missing"))}))
PY
}
: > "$base/results.jsonl"
run exists "${scan[@]}" --level exists
run exists_64 "${scan[@]}" --level exists --io-depth 64
run quick "${scan[@]}" --level quick
[ "${IMMICH:-1}" = 0 ] || run immich node benches/immich_missing_files.mjs "$base/paths.txt"

python3 - "$base/results.jsonl" "$files" "$immich_files" "$delay" "$rows" target/bench/nas.json <<'PY'
import json, sys
res = [json.loads(l) for l in open(sys.argv[1])]
files, immich_files, delay, rows = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000, int(sys.argv[5])
by = {r["what"]: r for r in res}
print(f"library: {rows} asset rows, {files} files referenced ({immich_files} paths for Immich's check); {delay*1000:g} ms per metadata op, no caching")
print(f"{'what':<10} {'wall_s':>8} {'cpu_s':>7} {'files':>7} {'meta_ops':>9} {'ops/file':>8} {'mean_in_flight':>14} {'max_in_flight':>13} {'io_depth':>10}")
for r in res:
    f = r["files"] or 0
    print(f"{r['what']:<10} {r['wall_s']:>8.2f} {r['cpu_s']:>7.2f} {f:>7} {r['metadata_ops']:>9} {r['metadata_ops']/max(f,1):>8.2f} {r['mean_in_flight']:>14} {r['max_in_flight']:>13} {str(r['io_depth']):>10}")
lim_files = files * delay / 64
e64 = by["exists_64"]
lim_ops = e64["metadata_ops"] * delay / 64
print(f"limit for 64 in flight: files x latency / 64 = {lim_files:.2f} s; metadata ops x latency / 64 = {lim_ops:.2f} s")
d = lambda a, b: a / max(b, 1e-3)
if "immich" in by:
    print(f"ratios: immich/exists {d(by['immich']['wall_s'], by['exists']['wall_s']):.1f}x, immich/quick {d(by['immich']['wall_s'], by['quick']['wall_s']):.1f}x")
print(f"ratios: exists_64/limit(files) {d(e64['wall_s'], lim_files):.2f}x, exists_64/limit(ops) {d(e64['wall_s'], lim_ops):.2f}x")
json.dump({"rows": rows, "files": files, "delay_s": delay, "limit_files_64_s": lim_files, "limit_ops_64_s": lim_ops, "runs": res}, open(sys.argv[6], "w"), indent=1)
print("wrote", sys.argv[6])
PY
