#!/usr/bin/env bash
# Proof on a second distribution, from scratch: make a Debian root with debootstrap (default
# trixie), copy a clean clone of this repository's HEAD into it and run the README's two commands
# there (`bash tools/setup.sh`, `bash tools/run_tests.sh`) in a chroot with /proc, /dev and /sys
# mounted, starting from the root's stock system Python. Not part of the test command: it takes
# tens of minutes. Run as root:
#
#   sudo bash tools/debootstrap_proof.sh [--suite trixie] [--work /var/tmp/attention-scale-proof]
#                                        [--fresh-base] [--base-only]
#
# The root lives outside the clone (--work). The debootstrapped base is kept there and copied
# afresh for every proof run (--fresh-base makes a new one), so each run starts from a system on
# which nothing of this project was ever installed. The mirror is the Debian archive named in this
# machine's apt configuration. Timings and logs go to <work>/logs/.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SUITE=trixie
WORK=/var/tmp/attention-scale-proof
FRESH_BASE=0
BASE_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) SUITE=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --fresh-base) FRESH_BASE=1; shift ;;
    --base-only) BASE_ONLY=1; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "debootstrap_proof: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "[proof] $*" >&2; }
die() { echo "debootstrap_proof: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot and mount need it)"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
case "$WORK/" in "$REPO"/*) die "--work $WORK is inside the clone $REPO; pick a folder outside it" ;; esac

MIRROR=$(cd "$REPO" && python3 -c 'import sys; sys.path.insert(0, "python")
from attention_scale.caffe_build.debian_source import debian_mirrors
m = debian_mirrors(); print(m[0] if m else "")')
[ -n "$MIRROR" ] || die "no Debian archive URI in this machine's apt sources (/etc/apt)"

BASE=$WORK/base-$SUITE
ROOT=$WORK/root-$SUITE
LOGS=$WORK/logs
mkdir -p "$LOGS"
TIMINGS=$LOGS/timings-$SUITE.txt
: >"$TIMINGS"
stamp() { echo "$1 $2" >>"$TIMINGS"; say "$1: $2 s"; }

MOUNTED=()
cleanup() {
  local i
  for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do
    umount -R "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" 2>/dev/null || true
  done
  MOUNTED=()
}
trap cleanup EXIT INT TERM

if [ "$FRESH_BASE" = 1 ] || [ ! -f "$BASE/.proof-base-complete" ]; then
  rm -rf "$BASE"
  say "debootstrap $SUITE from $MIRROR into $BASE (stock system: python3, no venv, no headers)"
  t0=$(date +%s)
  # python3 is the distribution's minimal interpreter (no python3-venv, no python3-dev);
  # ca-certificates is part of any installed Debian system and pip needs it.
  debootstrap --include=python3,ca-certificates "$SUITE" "$BASE" "$MIRROR" \
    >"$LOGS/debootstrap-$SUITE.log" 2>&1 || die "debootstrap failed; see $LOGS/debootstrap-$SUITE.log"
  touch "$BASE/.proof-base-complete"
  stamp debootstrap_s $(( $(date +%s) - t0 ))
fi
[ "$BASE_ONLY" = 1 ] && { say "base ready in $BASE"; exit 0; }

say "fresh root $ROOT (a copy of the base)"
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"

# This machine's network settings (resolver, site CA certificates, pip/proxy variables) so that
# apt and pip inside the root reach the same archives as here; nothing of the project.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
fi
for f in /etc/apt/apt.conf.d/*; do
  grep -q -E '^\s*Acquire::' "$f" 2>/dev/null && cp "$f" "$ROOT/etc/apt/apt.conf.d/"
done
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"

# A clean clone: exactly the committed tree of HEAD.
CLONE=/srv/attention-scale   # world-readable, so the tests that run a step as nobody can
mkdir -p "$ROOT$CLONE"
git -C "$REPO" archive HEAD | tar -x -C "$ROOT$CLONE"
say "clone of $(git -C "$REPO" rev-parse --short HEAD) in $ROOT$CLONE"

for fs in proc sys dev; do
  mkdir -p "$ROOT/$fs"
  case $fs in
    proc) mount -t proc proc "$ROOT/proc" ;;
    sys) mount --rbind /sys "$ROOT/sys"; mount --make-rslave "$ROOT/sys" ;;
    dev) mount --rbind /dev "$ROOT/dev"; mount --make-rslave "$ROOT/dev" ;;
  esac
  MOUNTED+=("$ROOT/$fs")
done

ENV=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
     TERM=dumb)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL \
         PIP_EXTRA_INDEX_URL PIP_CERT PIP_DEFAULT_TIMEOUT SSL_CERT_FILE REQUESTS_CA_BUNDLE; do
  [ -n "${!v:-}" ] && ENV+=("$v=${!v}")
done
in_root() { chroot "$ROOT" /usr/bin/env -i "${ENV[@]}" nice -n 10 /bin/bash -c "$1"; }

in_root "update-ca-certificates >/dev/null 2>&1 || true"
in_root "python3 --version; python3 -c 'import ensurepip' 2>&1 | tail -1; \
  ls /usr/include/python3*/Python.h 2>&1 | tail -1" | sed 's/^/[proof] stock: /' >&2

run_step() {  # name, command
  local t0 rc
  t0=$(date +%s)
  set +e
  in_root "cd $CLONE && $2" >"$LOGS/$1-$SUITE.log" 2>&1
  rc=$?
  set -e
  stamp "${1}_s" $(( $(date +%s) - t0 ))
  echo "${1}_exit $rc" >>"$TIMINGS"
  tail -n 5 "$LOGS/$1-$SUITE.log" | sed "s/^/[proof] $1: /" >&2
  [ $rc -eq 0 ] || die "$1 failed (exit $rc); log: $LOGS/$1-$SUITE.log"
}
run_step setup "bash tools/setup.sh"
run_step tests_warm "bash tools/run_tests.sh -q"

in_root "echo gcc: \$(gcc -dumpfullversion); echo cmake: \$(cmake --version | head -1); \
  echo protoc: \$(protoc --version); echo python: \$(python3 --version); \
  echo boost: \$(dpkg-query -W -f='\${Version}' libboost-system-dev); \
  echo hdf5: \$(dpkg-query -W -f='\${Version}' libhdf5-dev); \
  echo pip-protobuf: \$($CLONE/.venv/bin/python -c 'import google.protobuf as p; print(p.__version__)'); \
  echo numpy: \$($CLONE/.venv/bin/python -c 'import numpy; print(numpy.__version__)')" \
  | tee "$LOGS/versions-$SUITE.txt" | sed 's/^/[proof] /' >&2
say "PASSED on $SUITE: the README's two commands; timings in $TIMINGS"
cat "$TIMINGS"
