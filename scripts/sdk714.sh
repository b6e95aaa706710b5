#!/usr/bin/env bash
# Runs the Service Bus conformance suite under azure-servicebus 7.14.2, the last release that sends
# peek-lock settlements pre-settled (7.14.3 and 7.15 send them unsettled and wait for the broker's echo),
# so the emulator is held to both wire styles.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-sdk714/bin/python ]; then
  python3 -m venv .venv-sdk714
  .venv-sdk714/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv-sdk714/.dtf-sb-installed
SDK_PIN='azure-servicebus==7.14.2'
want=$( (cat pyproject.toml; echo "$SDK_PIN") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv-sdk714/bin/python -m pip install -q -e '.[test]' "$SDK_PIN"
  echo "$want" > "$stamp"
fi
.venv-sdk714/bin/python -c 'import azure.servicebus as s; print("conformance suite under azure-servicebus", s.__version__)'
.venv-sdk714/bin/python -m pytest -n "${DTF_SB_TEST_WORKERS:-4}" --dist loadfile emulator_tests/servicebus
