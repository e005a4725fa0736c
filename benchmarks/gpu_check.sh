#!/usr/bin/env bash
# The one-shot GPU check (issue 13): on a machine with CUDA and the package installed
# (bash docker/install.sh cuda), with the shared case under $MCINR_REAL_DATA (copy
# brats-gli-00001-000 into the checkout, e.g. shared/data/real, for the device tool).
# About 6-8 minutes on one H200; writes $OUT/gpu_check.json (or ./gpu_check/).
set -euo pipefail
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1
timeout 480 python gpu_check.py --out "${OUT:-gpu_check}" "$@"
