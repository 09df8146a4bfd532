#!/usr/bin/env bash
# Set up (if needed) and run the default test suite (slow tests excluded; `-m slow` runs them).
# With no arguments (CI): the whole suite with branch coverage of unfoldconv/, the report
# printed (files below 100%, missing lines and branches) and a floor the run must keep.
# With arguments: pytest with them, no coverage (e.g. `scripts/test.sh tests/test_fold.py`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
COVERAGE_FLOOR=${COVERAGE_FLOOR:-94}  # percent of lines + branches together; 96 measured
if [ "$#" -eq 0 ]; then
    exec "$PY" -m pytest -n 2 --cov=unfoldconv --cov-branch \
        --cov-report=term-missing:skip-covered --cov-fail-under="$COVERAGE_FLOOR"
fi
exec "$PY" -m pytest -n 2 "$@"
