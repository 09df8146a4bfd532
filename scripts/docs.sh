#!/usr/bin/env bash
# Build the documentation site into docs/_build/html (offline, warnings are errors); set-up
# first when needed: the package and its extras (scripts/setup.sh: CPU torch 2.13.0 first when
# torch is missing) and the `docs` extra of pyproject.toml.
#
#   bash scripts/docs.sh            # build
#   bash scripts/docs.sh --check    # build, then the browser test (headless Chromium; apt
#                                   # installs chromium + chromium-driver when missing) and the
#                                   # packaging test (sdist + wheel, twine check, fresh venv)
# Other arguments go to sphinx-build (e.g. -E for a full rebuild); with --check, to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch, unfoldconv, matplotlib" >/dev/null 2>&1; then
    bash scripts/setup.sh
fi
if ! "$PY" -c "import sphinx, sphinx_gallery, pydata_sphinx_theme, sphinx_copybutton, selenium, build, twine" >/dev/null 2>&1; then
    # the docs extra's requirements, read from pyproject.toml (the package itself is imported
    # from this checkout by docs/conf.py, so it is not reinstalled here)
    "$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["docs"]))' \
        | xargs -d '\n' "$PY" -m pip install --quiet
fi

check=0
if [[ "${1:-}" == "--check" ]]; then
    check=1
    shift
fi

if [[ $check == 0 ]]; then
    start=$SECONDS
    "$PY" -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
    echo "docs built in $((SECONDS - start)) s: docs/_build/html/index.html"
    exit 0
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# tests/test_docs.py builds the site itself (incrementally: cheap after a build)
exec "$PY" -m pytest -p no:xdist -p no:cacheprovider -m "" \
    tests/test_docs.py tests/test_packaging.py "$@"
