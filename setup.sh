#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install the project
# editable with its test, cluster (Ray) and viewer (FastAPI) extras. Safe to run again: an up-to-date .venv is left as it is.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Re-install when the dependencies or the set of packages change (an editable install maps
# packages that existed when it ran).
stamp=.venv/.installed-$( (cat setup.py requirements.txt constraints.txt autopet_common/compat/torchvision_ops_hook.py; ls -d ./*/__init__.py) | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test,cluster,viewer]"
    # nnU-Net's stock trainer search imports torchvision (via timm). Where PyPI's torchvision
    # cannot load next to the installed torch (a CPU torch build), install a lazy hook that
    # lets the import succeed; see autopet_common/compat/torchvision_ops_hook.py. Elsewhere: nothing.
    site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    rm -f "$site/torchvision_ops_hook.py" "$site/autopet_torchvision_ops_hook.pth"
    if ! .venv/bin/python -c "import torchvision" >/dev/null 2>&1; then
        cp autopet_common/compat/torchvision_ops_hook.py "$site/torchvision_ops_hook.py"
        echo "import torchvision_ops_hook; torchvision_ops_hook.install()" > "$site/autopet_torchvision_ops_hook.pth"
        if .venv/bin/python -c "import torchvision" >/dev/null 2>&1; then
            echo "setup.sh: torchvision cannot load its extension next to this torch build; installed autopet_common/compat/torchvision_ops_hook.py so nnU-Net's stock commands run"
        else
            echo "setup.sh: warning: 'import torchvision' fails even with the work-around; stock nnUNetv2_train with external trainers will not run" >&2
        fi
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi
# nnU-Net looks -preprocessor_name up only inside its own package: put a one-line re-export of
# Task1/preprocessors.py there (every run; cheap and idempotent). See that module's docstring.
.venv/bin/python -m Task1.preprocessors --install --quiet
# The viewer's page loads NiiVue from viewer/static/vendor (no CDN): npm installs the version pinned
# in viewer/package-lock.json and the one ES module is copied there (every run; cheap when current).
if command -v npm >/dev/null 2>&1; then
    if [ ! -f viewer/node_modules/@niivue/niivue/dist/index.js ] || [ viewer/package-lock.json -nt viewer/node_modules/.package-lock.json ]; then
        (cd viewer && npm ci --no-audit --no-fund --loglevel=error)
    fi
    mkdir -p viewer/static/vendor/niivue
    cp viewer/node_modules/@niivue/niivue/dist/index.js viewer/static/vendor/niivue/index.js
else
    echo "setup.sh: warning: npm not found; the viewer's page cannot load NiiVue (install Node.js and npm, run ./setup.sh again)" >&2
fi
