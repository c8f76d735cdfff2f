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
export PYTHONDONTWRITEBYTECODE=1
scripts/python-venv.sh "$venv" "$tests"

status=0
"$venv/bin/python" -m pytest "$tests" -q -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 0 ]; then
    echo "chart checks: passed ($((SECONDS - start))s)"
else
    echo "chart checks: FAILED with status $status ($((SECONDS - start))s)"
fi
exit "$status"
