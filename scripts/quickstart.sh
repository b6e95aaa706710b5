#!/usr/bin/env bash
# One command from a fresh clone: install everything (.venv, the package, Azurite from npm), then run
# a sample orchestration end to end on the embedded Service Bus emulator and Azurite, printing its
# result and its history as a timeline. Pass another sample's file name to run that one instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
sample=${1:-hello_sequence.py}
exec .venv/bin/python "samples/${sample%.py}.py"
