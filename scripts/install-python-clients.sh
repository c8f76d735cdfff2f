#!/usr/bin/env bash
# Installs the Python clients the api tests run: the standard Python Kafka client (confluent-kafka with its schema registry and Avro
# support) into .venv-analysts/, for the test that reads our topics the way analysts' Python
# tooling does.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/python-venv.sh .venv-analysts ticketing/tests/python
# Schemathesis, for the property-based run against the API's own OpenAPI document.
scripts/python-venv.sh .venv-schemathesis ticketing/tests/schemathesis
