#!/usr/bin/env bash
# Installs the standard Python Kafka client (confluent-kafka with its schema registry and Avro
# support) into .venv-analysts/, for the test that reads our topics the way analysts' Python
# tooling does. Reused while ticketing/tests/python/requirements.txt and constraints.txt are
# unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-analysts
reqs=ticketing/tests/python
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
command -v python3 >/dev/null || { echo "install-python-clients: python3 is required" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
wanted=$(cat "$reqs/requirements.txt" "$reqs/constraints.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "install-python-clients: installing confluent-kafka into $venv"
    (cd "$reqs" && "../../../$venv/bin/python" -m pip install --quiet -r requirements.txt)
    echo "$wanted" >"$stamp"
fi
