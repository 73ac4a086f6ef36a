#!/usr/bin/env bash
# Scale benchmark: on one generated library per size, compare our `scan --level exists` with
# the floor (`find ROOT -type f`) and the naive baseline an admin would write (export paths
# with psql, stat them with xargs), then `--level quick` and `--level hash` against `cat` of
# the same bytes (MB/s = bytes of the library / wall time, so all three rows are comparable),
# and the `--manifest` runs: building it at `hash`, a rerun with nothing changed (reads no
# content), and a `--verify-manifest` rerun (reads everything, blake3 + SHA-1 in one pass).
# Usage: bash benches/scale.sh [SIZES...]   (default: 10000 100000)
# Prints a table and writes target/bench/scale.json. Caches are warm (a first untimed pass);
# with DROP_CACHES=1 (root) it also times a cold pass after `echo 3 > /proc/sys/vm/drop_caches`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p immich-integrity-cli -p immich-fixtures
BIN=./target/release
mkdir -p target/bench
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
json=target/bench/scale.json; echo "[" > "$json"; first=1

# wall seconds, cpu seconds, peak RSS KiB of one command (output discarded)
measure() {
  local t; t=$(mktemp)
  /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" > /dev/null 2>&1 || true
  # the last line: time(1) puts "Command exited with non-zero status N" above it
  tail -n 1 "$t" | awk '{printf "%s %.2f %s", $1, $2+$3, $4}'; rm -f "$t"
}

printf '%-8s %-22s %8s %8s %9s %12s %9s\n' assets what wall_s cpu_s rss_MiB files_per_s MB_per_s
for n in "${sizes[@]}"; do
  base=$(mktemp -d /tmp/immich-bench.XXXXXX); chmod 755 "$base"
  fx=$($BIN/immich-fixture --generation v2.6 --assets "$n" --no-faults --out "$base")
  get() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$fx" "$1"; }
  db=$(get db_url); media=$(get media_root); dir=$(get dir); files=$(get files_referenced)
  maps=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(' '.join('--map %s=%s' % (c, h) for c, h in d['maps'] if c != d['container_root']))" "$fx")
  # an array, not a function: time(1) must exec it
  # shellcheck disable=SC2206
  scan=($BIN/immich-integrity scan --db-url "$db" --media-root "$media" $maps --format jsonl)
  naive() {
    psql "$db" -Atc "SELECT \"originalPath\" FROM asset UNION ALL SELECT path FROM asset_file" \
      | sed "s#^/data#$media#" | tr '\n' '\0' | xargs -0 stat -c '%s' > /dev/null 2>&1 || true
  }
  bytes=$(du -sb "$dir" | cut -f1)
  "${scan[@]}" > /dev/null || true; find "$dir" -type f > /dev/null   # warm the caches
  declare -A r
  r[exists]=$(measure "${scan[@]}" --level exists)
  r[find]=$(measure find "$dir" -type f)
  r[naive]=$(measure bash -c "$(declare -f naive); db='$db' media='$media' naive")
  r[quick]=$(measure "${scan[@]}" --level quick)
  r[hash]=$(measure "${scan[@]}" --level hash)
  r[sha1sum]=$(measure bash -c "find '$dir' -type f -print0 | xargs -0 sha1sum > /dev/null")
  r[cat]=$(measure bash -c "find '$dir' -type f -print0 | xargs -0 cat > /dev/null")
  manifest="$base/manifest.redb"
  r[manifest_build]=$(measure "${scan[@]}" --level hash --manifest "$manifest")
  r[manifest_rerun]=$(measure "${scan[@]}" --level hash --manifest "$manifest")
  r[manifest_verify]=$(measure "${scan[@]}" --level hash --manifest "$manifest" --verify-manifest)
  manifest_bytes=$(stat -c %s "$manifest")
  for k in exists find naive quick cat hash sha1sum manifest_build manifest_rerun manifest_verify; do
    read -r wall cpu rss <<< "${r[$k]}"
    fps=$(python3 -c "print(int($files/max($wall,0.001)))")
    mbs=$(python3 -c "print(round($bytes/1e6/max($wall,0.001), 1))")
    printf '%-8s %-22s %8s %8s %9s %12s %9s\n' "$n" "$k" "$wall" "$cpu" "$((rss/1024))" "$fps" "$mbs"
    [ $first = 1 ] || echo "," >> "$json"; first=0
    printf '{"assets":%s,"files":%s,"bytes":%s,"what":"%s","wall_s":%s,"cpu_s":%s,"peak_rss_kib":%s,"mb_per_s":%s}' \
      "$n" "$files" "$bytes" "$k" "$wall" "$cpu" "$rss" "$mbs" >> "$json"
  done
  echo "         library: $files files, $((bytes/1000000)) MB; manifest file: $((manifest_bytes/1024)) KiB"
  python3 - "${r[exists]}" "${r[find]}" "${r[naive]}" "${r[quick]}" "${r[cat]}" "${r[hash]}" "${r[sha1sum]}" "${r[manifest_rerun]}" "${r[manifest_verify]}" <<'PY'
import sys
e, f, nv, q, c, h, s, mr, mv = (float(a.split()[0]) for a in sys.argv[1:])
d = lambda a, b: a / max(b, 1e-3)
print(f"         ratios: exists/find {d(e,f):.2f}x, naive/exists {d(nv,e):.1f}x, quick/cat {d(q,c):.2f}x, hash/sha1sum {d(h,s):.2f}x")
print(f"         manifest: unchanged rerun/hash {d(mr,h):.2f}x, verify/hash {d(mv,h):.2f}x")
PY
  $BIN/immich-fixture drop "$(get db_name)" --dir "$dir" > /dev/null; rm -rf "$base"
done
echo "]" >> "$json"
echo "wrote $json"
