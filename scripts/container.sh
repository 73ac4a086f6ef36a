#!/usr/bin/env bash
# Builds the container image on this machine without any registry, and runs it once with zero
# flags against the local PostgreSQL and a generated library mounted at /data, as Immich's
# compose project would (docker-compose.integrity.yml). Run by hand, as root; CI does not run it.
#
#   bash scripts/container.sh              # docker (started here if it is not running)
#   ENGINE=podman bash scripts/container.sh
#
# 1. The base image the Dockerfile names (debian:$DEBIAN-slim) is made from Debian's packages
#    with debootstrap and imported under that name, so the build pulls nothing.
# 2. The image is built with the host's network (the build reaches Debian's archive and
#    crates.io as the host does; no bridge network is made).
# 3. A v2.6 library is generated (database on 127.0.0.1:5432, media in a temp folder) and the
#    image runs `scan` with only Immich's DB_* variables, the media at /data and the external
#    library at its container path, as the server's user (the fixture's 1000:1000).
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE=${ENGINE:-docker}
DEBIAN=${DEBIAN:-trixie}
BASE="debian:${DEBIAN}-slim"
IMAGE=${IMAGE:-immich-integrity:latest}
WORK=${WORK:-/var/tmp/immich-integrity-container}
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$WORK"

pkg_of() { case "$1" in docker | dockerd) echo docker.io ;; *) echo "$1" ;; esac; }
# A docker client alone (a static binary in /usr/local/bin, say) cannot start an engine.
daemon=""; [ "$ENGINE" = docker ] && daemon=dockerd
for tool in "$ENGINE" $daemon debootstrap; do
  if ! command -v "$tool" >/dev/null; then
    echo "+ apt-get install $(pkg_of "$tool")" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$(pkg_of "$tool")" >&2
  fi
done

started_engine=""
fixture_db=""
fixture_dir=""
cleanup() {
  if [ -n "${vendored:-}" ]; then rm -rf vendor; fi
  if [ -n "$fixture_db" ]; then
    "$target_dir/debug/immich-fixture" drop "$fixture_db" --dir "$fixture_dir" >/dev/null 2>&1 || true
  fi
  if [ -n "$started_engine" ]; then
    echo "+ stopping the dockerd this script started (pid $started_engine)" >&2
    kill "$started_engine" 2>/dev/null || true
    wait "$started_engine" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# 1. An engine. dockerd without a bridge or iptables rules: containers use the host network.
if [ "$ENGINE" = docker ] && ! docker info >/dev/null 2>&1; then
  echo "+ dockerd --bridge=none --iptables=false --ip-masq=false" >&2
  dockerd --bridge=none --iptables=false --ip-masq=false >"$WORK/dockerd.log" 2>&1 &
  started_engine=$!
  for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || {
    echo "container.sh: dockerd did not start; its log:" >&2
    tail -n 30 "$WORK/dockerd.log" >&2
    exit 2
  }
fi

# 2. The base image, from Debian's packages.
if ! "$ENGINE" image inspect "$BASE" >/dev/null 2>&1; then
  rootfs="$WORK/rootfs-$DEBIAN"
  if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
    echo "+ debootstrap --variant=minbase $DEBIAN $rootfs" >&2
    debootstrap --variant=minbase "$DEBIAN" "$rootfs" http://deb.debian.org/debian >&2
  fi
  # A mirror or proxy that serves a snapshot of the archive may hand out Release files past
  # their Valid-Until date; this local base image accepts them (it is never pushed anywhere).
  echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99local-snapshot"
  echo "+ tar -C $rootfs -c . | $ENGINE import - $BASE" >&2
  tar -C "$rootfs" -c . | "$ENGINE" import - "$BASE" >&2
fi

# 3. The image. The crates are vendored by the host's cargo first (the build container then
#    needs neither crates.io nor the host's TLS trust store); vendor/ is removed afterwards.
if [ ! -d vendor ]; then
  echo "+ cargo vendor --locked vendor" >&2
  cargo vendor --locked vendor >/dev/null
  vendored=1
fi
echo "+ $ENGINE build --network host --build-arg DEBIAN=$DEBIAN -t $IMAGE ." >&2
"$ENGINE" build --network host --build-arg DEBIAN="$DEBIAN" -t "$IMAGE" . >&2
if [ -n "${vendored:-}" ]; then rm -rf vendor; vendored=""; fi

# 4. A generated library, and a zero-flag run of the image against it.
bash scripts/setup.sh
cargo build -q -p immich-fixtures
base=$(mktemp -d /tmp/immich-integrity-container.XXXXXX)
chmod 755 "$base"
fixture=$("$target_dir/debug/immich-fixture" --generation v2.6 --assets 60 --out "$base")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$fixture" "$1"; }
fixture_db=$(field db_name)
fixture_dir=$(field dir)
# Each external library at its container path, as the server's compose file mounts it.
mounts=$(python3 -c "
import json, os, sys
d = json.loads(sys.argv[1])
print(' '.join('-v %s:%s:ro' % (h, c) for c, h in d['maps']
               if c != d['container_root'] and os.path.isdir(h)))" "$fixture")
echo "Demo library: $(field asset_rows) assets in database $fixture_db, media in $(field media_root)" >&2
set -x
# shellcheck disable=SC2086
"$ENGINE" run --rm --network host --user "$(field as_user)" \
  -e DB_HOSTNAME=127.0.0.1 -e DB_USERNAME=postgres -e DB_DATABASE_NAME="$fixture_db" \
  -e DB_PORT=5432 \
  -v "$(field media_root)":/data:ro $mounts \
  "$IMAGE" scan || code=$?
set +x
code=${code:-0}
echo "exit code $code (0 clean, 1 faults found, 2 could not run)" >&2
[ "$code" -le 1 ]
