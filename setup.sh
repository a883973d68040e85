#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install the project
# editable with its test extras. Safe to run again: an up-to-date .venv is left as it is.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Re-install when the dependencies or the set of packages change (an editable install maps
# packages that existed when it ran).
stamp=.venv/.installed-$( (cat setup.py requirements.txt constraints.txt; ls -d ./*/__init__.py) | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
