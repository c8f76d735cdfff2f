#!/usr/bin/env bash
# Checks the Helm chart (infra/helm/ticketing) and the Dockerfile offline, without a helm
# binary or a cluster: lint, values schema, render with the default and the production-like
# values, Kubernetes schema validation, checkov. Installs its tools into .venv-chart/ (reused
# while infra/helm/tests/requirements.txt and constraints.txt are unchanged).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
venv=.venv-chart
tests=infra/helm/tests
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
wanted=$(cat "$tests/requirements.txt" "$tests/constraints.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "chart checks: installing the tools into $venv"
    (cd "$tests" && "../../../$venv/bin/python" -m pip install --quiet -r requirements.txt)
    echo "$wanted" >"$stamp"
fi

status=0
"$venv/bin/python" -m pytest "$tests" -q -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 0 ]; then
    echo "chart checks: passed ($((SECONDS - start))s)"
else
    echo "chart checks: FAILED with status $status ($((SECONDS - start))s)"
fi
exit "$status"
