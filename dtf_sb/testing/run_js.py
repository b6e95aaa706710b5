"""Run a Node.js Service Bus client script against a fresh embedded emulator.

The JavaScript SDK speaks AMQP through rhea rather than the Python SDK's pyamqp, so a script run this
way catches broker behaviour that only happens to suit one client. The script gets the emulator's
connection string in ``SERVICEBUS_CONNECTION_STRING`` and is expected to print ``N passed, M failed``;
this runner repeats that as a one-line summary and exits with node's exit code.

    python -m dtf_sb.testing.run_js emulator_tests/js/conformance.mjs [--config Config.json]

Without ``--config`` the emulator loads the ``Config.json`` beside the script, if there is one.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from dtf_sb.testing.emulator import EmulatorThread

__all__ = ["main", "run_script"]

CONNECTION_STRING_ENV = "SERVICEBUS_CONNECTION_STRING"
_SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed\s*$")


def run_script(
    script: Path, *, config: Path | None = None, node: str = "node", timeout: float = 300.0
) -> int:
    """Start an emulator, run ``node script`` against it, print the summary and return node's exit code."""
    if config is None and script.with_name("Config.json").is_file():
        config = script.with_name("Config.json")
    node_path = shutil.which(node)
    if node_path is None:
        print(f"js conformance: cannot run, {node!r} is not on PATH", file=sys.stderr)
        return 127
    with EmulatorThread(str(config) if config else None) as emulator:
        env = {**os.environ, CONNECTION_STRING_ENV: emulator.connection_string}
        try:
            proc = subprocess.run(
                [node_path, str(script)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = (
                exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
            )
            sys.stdout.write(output)
            print(f"js conformance: {script} did not finish within {timeout:.0f} s")
            return 124
    sys.stdout.write(proc.stdout)
    summary = [m for line in proc.stdout.splitlines() if (m := _SUMMARY.match(line))]
    if summary:
        passed, failed = summary[-1].groups()
        print(f"js-conformance: {passed} passed, {failed} failed")
    else:
        print(f"js conformance: no summary line from {script} (node exit code {proc.returncode})")
    return proc.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dtf_sb.testing.run_js", description=__doc__.split("\n")[0]
    )
    parser.add_argument("script", type=Path, help="the .mjs script to run with node")
    parser.add_argument(
        "--config", type=Path, default=None, help="emulator Config.json (default: beside script)"
    )
    parser.add_argument("--node", default="node", help="node executable (default: node on PATH)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before node is stopped")
    args = parser.parse_args(argv)
    return run_script(args.script, config=args.config, node=args.node, timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
