#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent): a CPU torch first when none is installed,
# then unfoldconv with its experiment and test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[dev]"
