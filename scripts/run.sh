#!/usr/bin/env bash
# Set up (if needed) and run the main job: the offline All-CNN-C comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
exec "$PY" experiments/allcnnc.py "$@"
