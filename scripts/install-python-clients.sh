#!/usr/bin/env bash
# Installs the standard Python Kafka client (confluent-kafka with its schema registry and Avro
# support) into .venv-analysts/, for the test that reads our topics the way analysts' Python
# tooling does.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/python-venv.sh .venv-analysts ticketing/tests/python
