#!/usr/bin/env bash
# Installs what a fresh machine lacks (idempotent) and makes sure PostgreSQL answers.
# Called by .ci/run and by the README commands.
set -euo pipefail

need_pkgs=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev
           libavdevice-dev clang libclang-dev pkg-config postgresql-client ffmpeg strace time
           bsdutils nginx openssl libheif-dev libheif-examples libavif-bin libjxl-tools fuse3)
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "setup: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 >&2 || { echo "setup: PostgreSQL does not answer at 127.0.0.1:5432" >&2; exit 1; }
