#!/usr/bin/env bash
# Runs the Service Bus conformance suite under azure-servicebus 7.14.x, whose settlement style
# (pre-settled dispositions) differs on the wire from 7.15's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-sdk714/bin/python ]; then
  python3 -m venv .venv-sdk714
  .venv-sdk714/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv-sdk714/.dtf-sb-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv-sdk714/bin/python -m pip install -q -e '.[test]' 'azure-servicebus>=7.14,<7.15'
  echo "$want" > "$stamp"
fi
.venv-sdk714/bin/python -c 'import azure.servicebus as s; print("conformance suite under azure-servicebus", s.__version__)'
.venv-sdk714/bin/python -m pytest emulator_tests/servicebus
