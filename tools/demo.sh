#!/usr/bin/env bash
# README command one: set up what is missing (the tests' setup: Caffe with the layers, cached,
# and .venv; fast when warm), then run the synthetic demo. Arguments go to tools/demo.py
# (--seeds K, --quick, --output DIR, ...; see `.venv/bin/python tools/demo.py --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python tools/demo.py "$@"
