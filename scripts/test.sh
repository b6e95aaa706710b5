#!/usr/bin/env bash
# The whole test suite: unit tests, the Service Bus conformance suite and the end-to-end runtime tests
# against the embedded emulator and Azurite (both started by the tests themselves), the conformance
# suite again under azure-servicebus 7.14, and the JavaScript SDK client script.
# Extra arguments go to the main pytest run (e.g. `-m slow` for the fault-injection tests).
# The suites run in DTF_SB_TEST_WORKERS processes (default 4): most of an end-to-end test's time is the
# SDK's own pacing (it reads one frame per 50 ms while opening a link), not CPU, so four processes
# share two cores well. Each process starts its own emulator and Azurite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

.venv/bin/python -m ruff check dtf_sb tests emulator_tests benchmarks samples
.venv/bin/python -m pytest -n "${DTF_SB_TEST_WORKERS:-4}" --dist loadfile "$@"

if [ -d emulator_tests/servicebus ] && [ -z "${DTF_SB_SKIP_SDK714:-}" ]; then
  bash scripts/sdk714.sh
fi
if [ -f emulator_tests/js/conformance.mjs ]; then
  .venv/bin/python -m dtf_sb.testing.run_js emulator_tests/js/conformance.mjs
fi
