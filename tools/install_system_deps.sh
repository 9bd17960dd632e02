#!/usr/bin/env bash
# Debian packages needed to build Caffe and the layers. Installs only what is missing.
set -euo pipefail
PKGS=(cmake g++ make ccache libboost-system-dev libboost-thread-dev libboost-filesystem-dev
      libboost-python-dev libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev
      libhdf5-dev libopenblas-dev dpkg-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "[setup] installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v apt-get >/dev/null; then
  echo "[setup] apt-get not found: install ${missing[*]} (or their equivalents) yourself" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
  "${missing[@]}" >/dev/null
