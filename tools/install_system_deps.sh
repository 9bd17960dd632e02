#!/usr/bin/env bash
# The system packages needed to build Caffe and the layers, installed with apt-get where they
# are missing (as root, or with sudo). Arguments: more Debian packages (the optional libraries a
# --caffe-root tree needs; tools/setup.sh passes them). Also makes sure the Python that builds
# pycaffe ($PYTHON, default python3) has venv/ensurepip and its C headers, which Debian and
# Ubuntu ship separately (pythonX.Y-venv, pythonX.Y-dev).
# On a system without dpkg it installs nothing: it checks the tools it can check and says what
# else to install, instead of reporting every package as missing.
set -euo pipefail
PYTHON=${PYTHON:-python3}
PKGS=(cmake g++ make ccache libboost-system-dev libboost-thread-dev libboost-filesystem-dev
      libboost-python-dev libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev
      libhdf5-dev libopenblas-dev dpkg-dev ca-certificates "$@")
say() { echo "[setup] $*" >&2; }

if ! command -v "$PYTHON" >/dev/null; then
  say "$PYTHON not found: install Python 3 (Debian/Ubuntu: apt-get install python3) or set PYTHON"
  exit 1
fi
py_missing=()
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || py_missing+=(venv)
"$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || py_missing+=(headers)
PYVER=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_python_version())')
PYEXE=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')

if ! command -v dpkg-query >/dev/null; then
  missing_tools=()
  for tool in cmake make c++ protoc; do command -v "$tool" >/dev/null || missing_tools+=("$tool"); done
  say "no dpkg here: packages are not checked. Caffe needs a C++ compiler, make, CMake, and the" \
      "development files of Boost (system, thread, filesystem, python3), protobuf (with protoc)," \
      "glog, gflags, HDF5 and OpenBLAS${*:+, plus the equivalents of: $*}; CMake names any that" \
      "it cannot find."
  [ ${#py_missing[@]} -eq 0 ] || say "$PYEXE (Python $PYVER) lacks ${py_missing[*]}: install" \
      "them (Fedora: python3-devel; conda and pyenv Pythons have both) or set PYTHON"
  if [ ${#missing_tools[@]} -gt 0 ] || [ ${#py_missing[@]} -gt 0 ]; then
    [ ${#missing_tools[@]} -eq 0 ] || say "missing commands: ${missing_tools[*]}"
    exit 1
  fi
  exit 0
fi

if [ ${#py_missing[@]} -gt 0 ]; then
  if dpkg-query -S "$PYEXE" >/dev/null 2>&1; then
    PKGS+=("python$PYVER-venv" "python$PYVER-dev")
  else
    say "$PYEXE (Python $PYVER, not from a Debian package) lacks ${py_missing[*]} (venv needs" \
        "ensurepip; pycaffe needs Python.h): reinstall that Python with them, or use the" \
        "system's (PYTHON=/usr/bin/python3 bash tools/setup.sh)"
    exit 1
  fi
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  say "apt-get not found: install ${missing[*]} (or their equivalents) yourself"
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { say "not root and no sudo: install ${missing[*]} as root"; exit 1; }
  SUDO="sudo"
fi
say "installing packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
