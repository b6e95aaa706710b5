#!/usr/bin/env bash
# Installs everything dtf-sb needs into the checkout: a virtualenv with the package and its test extras
# (.venv), and the Node tools (Azurite, the JavaScript Service Bus SDK) into node_modules.
# Idempotent: re-running only installs what changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.dtf-sb-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing dtf-sb and its test dependencies into .venv" >&2
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

nstamp=node_modules/.dtf-sb-installed
nwant=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$nstamp" ] || [ "$(cat "$nstamp")" != "$nwant" ]; then
  echo "bootstrap: installing Azurite and @azure/service-bus into node_modules" >&2
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
  echo "$nwant" > "$nstamp"
fi
