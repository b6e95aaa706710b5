#!/usr/bin/env bash
# The whole test suite: unit tests, the Service Bus conformance suite and the end-to-end runtime tests
# against the embedded emulator and Azurite (both started by the tests themselves), the conformance
# suite again under azure-servicebus 7.14, and the JavaScript SDK client script.
# Extra arguments go to the main pytest run (e.g. `-m slow` for the fault-injection tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

.venv/bin/python -m ruff check dtf_sb tests emulator_tests benchmarks samples
.venv/bin/python -m pytest "$@"

if [ -d emulator_tests/servicebus ] && [ -z "${DTF_SB_SKIP_SDK714:-}" ]; then
  bash scripts/sdk714.sh
fi
if [ -f emulator_tests/js/conformance.mjs ]; then
  .venv/bin/python -m dtf_sb.testing.run_js emulator_tests/js/conformance.mjs
fi
