#!/usr/bin/env bash
# Usage: scripts/python-venv.sh <venv> <dir>: makes <venv> with the machine's python3 and
# installs <dir>/requirements.txt (pinned by <dir>/constraints.txt) into it from PyPI, again
# only when those two files change.
set -euo pipefail
venv=$1
reqs=$2
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
command -v python3 >/dev/null || { echo "python-venv: python3 is required" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
wanted=$(cat "$reqs/requirements.txt" "$reqs/constraints.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "python-venv: installing $reqs/requirements.txt into $venv"
    python=$(cd "$venv" && pwd)/bin/python
    (cd "$reqs" && "$python" -m pip install --quiet -r requirements.txt)
    echo "$wanted" >"$stamp"
fi
