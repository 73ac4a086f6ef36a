#!/usr/bin/env bash
# Scale benchmark: on one generated library per size, compare our `scan --level exists` with
# the floor (`find ROOT -type f`) and the naive baseline an admin would write (export paths
# with psql, stat them with xargs), then `--level quick`, `hash` and `full` against `cat` and
# `sha1sum` of the same bytes (MB/s = bytes of the library / wall time, so the rows are
# comparable), `hash` also against `sha1sum` of the originals alone (the files it hashes:
# target 1.2x), and the `--manifest` runs: building it at `hash`, a rerun with nothing changed
# (reads no content), and a `--verify-manifest` rerun (reads everything, blake3 + SHA-1 in one
# pass). Last, the decode cost per format at `full` (ms per megapixel, `benches/formats.rs`;
# FORMATS=0 skips it).
# Usage: bash benches/scale.sh [SIZES...]   (default: 10000 100000; 1000000 works too: it
#        takes about 8 minutes to generate, ~19 GB of disk and ~5 M inodes, checked first)
# Prints a table and writes target/bench/scale.json. Caches are warm (a first untimed scan and
# find, and an untimed cat of every file before the content levels).
# With DROP_CACHES=1 (root) it also times exists, find and naive cold, each after
# `sync; echo 3 > /proc/sys/vm/drop_caches`; it says so when the kernel does not allow it.
# KEEP_FIXTURE=1 keeps each library (and its database) for more measurements by hand.
# FIXTURE=FILE measures an existing library instead (the JSON immich-fixture printed, e.g.
# a kept fixture.json; the sizes are then ignored) and leaves it in place.
# MANIFEST=0 skips the three --manifest rows (at 1 M they take most of the run).
# ORIGINAL_BYTES=N pads every JPEG original to N bytes (`immich-fixture --original-bytes`):
# the generated originals are a few KB, where per-file costs (the database stream, checking
# the derived files) hide what `hash` costs on real photos of a few MB; with it the hash rows
# measure hashing (e.g. ORIGINAL_BYTES=3000000 MANIFEST=0 FORMATS=0 bash benches/scale.sh 3000).
# PAUSE_DAMON=1 (root) turns DAMON's proactive reclaim (kdamond) off for the run and back on
# at the end: on VMs that run it, file cache idle for about a minute is paged out, so a
# "warm" find or cat would read the disk. Without it the script only says that it is on.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p immich-integrity-cli -p immich-fixtures
BIN=${CARGO_TARGET_DIR:-target}/release
mkdir -p target/bench
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
[ -z "${FIXTURE:-}" ] || sizes=(0)   # one library, already there (nothing to check)
json=target/bench/scale.json; echo "[" > "$json"; first=1
TMPBASE=${TMPDIR:-/tmp}

# wall seconds, cpu seconds, peak RSS KiB of one command (output discarded)
measure() {
  local t; t=$(mktemp)
  /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" > /dev/null 2>&1 || true
  # the last line: time(1) puts "Command exited with non-zero status N" above it
  tail -n 1 "$t" | awk '{printf "%s %.2f %s", $1, $2+$3, $4}'; rm -f "$t"
}

cold=0
if [ "${DROP_CACHES:-0}" = 1 ]; then
  if sync && echo 3 > /proc/sys/vm/drop_caches 2> /dev/null; then
    cold=1
  else
    echo "DROP_CACHES=1 but /proc/sys/vm/drop_caches is not writable here: no cold rows"
  fi
fi
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

damon_paused=()
for st in /sys/kernel/mm/damon/admin/kdamonds/*/state; do
  [ -e "$st" ] && [ "$(cat "$st")" = on ] || continue
  if [ "${PAUSE_DAMON:-0}" = 1 ] && echo off > "$st" 2> /dev/null; then
    damon_paused+=("$st")
  else
    echo "note: DAMON reclaim is on ($st): warm rows may read from disk; PAUSE_DAMON=1 pauses it"
  fi
done
restore_damon() { for st in "${damon_paused[@]}"; do echo on > "$st"; done; }
trap restore_damon EXIT
[ ${#damon_paused[@]} = 0 ] || echo "DAMON reclaim paused for this run (${#damon_paused[@]} kdamond)"

printf '%-8s %-16s %8s %8s %8s %10s %11s %9s\n' assets what wall_s cpu_s rss_MiB rows_per_s files_per_s MB_per_s
for n in "${sizes[@]}"; do
  # About 20 KB of disk and 5 inodes per asset (small generated files, one folder each).
  need_kb=$((n * 20 + n * ${ORIGINAL_BYTES:-0} / 1024 + 1048576)); need_inodes=$((n * 5 + 100000))
  avail_kb=$(df -Pk "$TMPBASE" | awk 'NR==2 {print $4}')
  avail_inodes=$(df -Pi "$TMPBASE" | awk 'NR==2 {print $4}')
  if [ "$avail_kb" -lt "$need_kb" ] || [ "$avail_inodes" -lt "$need_inodes" ]; then
    echo "$n: skipped, needs ~$((need_kb / 1048576)) GiB and $need_inodes inodes in $TMPBASE" \
      "($((avail_kb / 1048576)) GiB, $avail_inodes inodes free)"
    continue
  fi
  base=$(mktemp -d "$TMPBASE/immich-bench.XXXXXX"); chmod 755 "$base"
  gen_start=$(date +%s)
  if [ -n "${FIXTURE:-}" ]; then
    fx=$(cat "$FIXTURE")
  else
    fx=$($BIN/immich-fixture --generation v2.6 --assets "$n" --no-faults --out "$base" \
      --original-bytes "${ORIGINAL_BYTES:-0}")
  fi
  gen_s=$(($(date +%s) - gen_start))
  get() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$fx" "$1"; }
  db=$(get db_url); media=$(get media_root); dir=$(get dir); files=$(get files_referenced)
  rows=$(get asset_rows)
  [ -z "${FIXTURE:-}" ] || n=$rows
  maps=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(' '.join('--map %s=%s' % (c, h) for c, h in d['maps'] if c != d['container_root']))" "$fx")
  # an array, not a function: time(1) must exec it
  # shellcheck disable=SC2206
  scan=($BIN/immich-integrity scan --db-url "$db" --media-root "$media" $maps --format jsonl)
  naive() {
    psql "$db" -Atc "SELECT \"originalPath\" FROM asset UNION ALL SELECT path FROM asset_file" \
      | sed "s#^/data#$media#" | tr '\n' '\0' | xargs -0 stat -c '%s' > /dev/null 2>&1 || true
  }
  bytes=$(du -sb "$dir" | cut -f1)
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  "${scan[@]}" > /dev/null || true; find "$dir" -type f > /dev/null   # warm the caches
  unset r; declare -A r
  whats=(exists find naive quick cat hash hash_originals sha1sum sha1sum_originals full manifest_build manifest_rerun manifest_verify)
  r[exists]=$(measure "${scan[@]}" --level exists)
  r[find]=$(measure find "$dir" -type f)
  r[naive]=$(measure bash -c "$(declare -f naive); db='$db' media='$media' naive")
  # exists and find read no file content: read it all once, untimed, so that the content
  # rows (quick, full, hash, cat, sha1sum) all run from the page cache.
  find "$dir" -type f -print0 | xargs -0 cat > /dev/null
  r[quick]=$(measure "${scan[@]}" --level quick)
  # Levels follow cost (README, Design notes): `hash` decodes nothing, so it is held against
  # sha1sum of the originals it hashes (the same files, the same bytes); `full` adds decoding.
  r[hash]=$(measure "${scan[@]}" --level hash)
  r[sha1sum]=$(measure bash -c "find '$dir' -type f -print0 | xargs -0 sha1sum > /dev/null")
  psql "$db" -Atc "SELECT \"originalPath\" FROM asset WHERE \"libraryId\" IS NULL" \
    | sed "s#^/data#$media#" | tr '\n' '\0' > "$base/originals"
  r[sha1sum_originals]=$(measure bash -c "xargs -0 sha1sum < '$base/originals' > /dev/null")
  # The same scan over the originals alone: the files sha1sum_originals reads, nothing else.
  r[hash_originals]=$(measure "${scan[@]}" --level hash --kind original)
  r[full]=$(measure "${scan[@]}" --level full)
  r[cat]=$(measure bash -c "find '$dir' -type f -print0 | xargs -0 cat > /dev/null")
  manifest="$base/manifest.redb"; manifest_bytes=0
  if [ "${MANIFEST:-1}" = 0 ]; then
    whats=("${whats[@]/manifest_*/}")
  else
    r[manifest_build]=$(measure "${scan[@]}" --level hash --manifest "$manifest")
    r[manifest_rerun]=$(measure "${scan[@]}" --level hash --manifest "$manifest")
    r[manifest_verify]=$(measure "${scan[@]}" --level hash --manifest "$manifest" --verify-manifest)
    manifest_bytes=$(stat -c %s "$manifest")
  fi
  if [ $cold = 1 ]; then
    drop; r[exists_cold]=$(measure "${scan[@]}" --level exists)
    drop; r[find_cold]=$(measure find "$dir" -type f)
    drop; r[naive_cold]=$(measure bash -c "$(declare -f naive); db='$db' media='$media' naive")
    whats+=(exists_cold find_cold naive_cold)
  fi
  for k in "${whats[@]}"; do
    [ -n "$k" ] || continue
    read -r wall cpu rss <<< "${r[$k]}"
    rps=$(python3 -c "print(int($rows/max($wall,0.001)))")
    fps=$(python3 -c "print(int($files/max($wall,0.001)))")
    mbs=$(python3 -c "print(round($bytes/1e6/max($wall,0.001), 1))")
    printf '%-8s %-16s %8s %8s %8s %10s %11s %9s\n' "$n" "$k" "$wall" "$cpu" "$((rss/1024))" "$rps" "$fps" "$mbs"
    [ $first = 1 ] || echo "," >> "$json"; first=0
    printf '{"assets":%s,"rows":%s,"files":%s,"bytes":%s,"what":"%s","wall_s":%s,"cpu_s":%s,"peak_rss_kib":%s,"rows_per_s":%s,"files_per_s":%s,"mb_per_s":%s,"loadavg_before":"%s"}' \
      "$n" "$rows" "$files" "$bytes" "$k" "$wall" "$cpu" "$rss" "$rps" "$fps" "$mbs" "$load" >> "$json"
  done
  echo "         library: $rows rows, $files files, $((bytes/1000000)) MB, generated in ${gen_s} s;" \
    "manifest file: $((manifest_bytes/1024)) KiB; load average before: $load"
  python3 - "${r[exists]}" "${r[find]}" "${r[naive]}" "${r[quick]}" "${r[cat]}" "${r[hash]}" "${r[sha1sum]}" "${r[manifest_rerun]:-0 0 0}" "${r[manifest_verify]:-0 0 0}" "${r[exists_cold]:-0 0 0}" "${r[find_cold]:-0 0 0}" "${r[naive_cold]:-0 0 0}" "${r[full]}" "${r[sha1sum_originals]}" "${r[hash_originals]}" <<'PY'
import sys
e, f, nv, q, c, h, s, mr, mv, ec, fc, nc, fu, so, ho = (float(a.split()[0]) for a in sys.argv[1:])
d = lambda a, b: a / max(b, 1e-3)
print(f"         ratios: exists/find {d(e,f):.2f}x, naive/exists {d(nv,e):.2f}x, quick/cat {d(q,c):.2f}x, hash/sha1sum(originals) {d(h,so):.2f}x (target 1.2x), hash --kind original/sha1sum(originals) {d(ho,so):.2f}x, hash/sha1sum(all files) {d(h,s):.2f}x, full/hash {d(fu,h):.2f}x")
if ec > 0:
    print(f"         cold:   exists/find {d(ec,fc):.2f}x, naive/exists {d(nc,ec):.2f}x")
if mr > 0:
    print(f"         manifest: unchanged rerun/hash {d(mr,h):.2f}x, verify/hash {d(mv,h):.2f}x")
PY
  if [ -n "${FIXTURE:-}" ]; then
    rm -rf "$base"
  elif [ "${KEEP_FIXTURE:-0}" = 1 ]; then
    echo "$fx" > "$base/fixture.json"
    echo "         kept: $base/fixture.json (drop it: immich-fixture drop $(get db_name) --dir $dir)"
  else
    $BIN/immich-fixture drop "$(get db_name)" --dir "$dir" > /dev/null; rm -rf "$base"
  fi
done
echo "]" >> "$json"
echo "wrote $json"
if [ "${FORMATS:-1}" != 0 ]; then
  echo "decode cost per format at --level full:"
  cargo bench -q --bench formats 2> /dev/null | tee target/bench/formats.txt
fi
