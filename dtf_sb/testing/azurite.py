"""Run a throwaway Azurite blob server for tests and local development.

Tests need a real Blob Storage endpoint (conditional writes, append positions and tag queries are the
behaviour under test, so a mock would prove nothing). Azurite from ``node_modules`` gives us one without
Docker or an Azure account. Each :class:`Azurite` owns a free loopback port and a temporary data directory
and removes both when it stops, so parallel test sessions never share state.

The flags are the ones checked in ``reference/azurite.md``: ``--skipApiVersionCheck`` because the SDK's
default API version is newer than Azurite knows, ``--disableTelemetry`` because without it Azurite 3.37
can take a minute to exit after SIGTERM, ``--loose`` and ``--silent`` to keep it tolerant and quiet.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

__all__ = [
    "DEVSTORE_ACCOUNT_KEY",
    "DEVSTORE_ACCOUNT_NAME",
    "Azurite",
    "AzuriteError",
    "find_azurite_executable",
]

#: Azurite's built-in development account. The key is public (it is in Microsoft's documentation), so
#: printing it would not be a leak; we still keep it out of reprs for consistency with real keys.
DEVSTORE_ACCOUNT_NAME = "devstoreaccount1"
DEVSTORE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

_ENV_EXECUTABLE = "DTF_SB_AZURITE"
_BIN_RELATIVE = Path("node_modules") / ".bin" / "azurite-blob"
_STOP_GRACE_SECONDS = 10.0
_START_ATTEMPTS = 3


class AzuriteError(RuntimeError):
    """Azurite could not be found, started or reached."""


def find_azurite_executable(*, search_from: Iterable[Path] | None = None) -> Path:
    """Locate ``azurite-blob``: ``$DTF_SB_AZURITE`` first, then ``node_modules`` of the repository.

    The repository root is searched upwards from both this file and the working directory (or from
    ``search_from``), so an editable install and a plain checkout both work.
    """
    override = os.environ.get(_ENV_EXECUTABLE)
    if override:
        path = Path(override).expanduser()
        if path.is_dir():
            path = path / _BIN_RELATIVE if (path / _BIN_RELATIVE).exists() else path / "azurite-blob"
        if not path.exists():
            raise AzuriteError(
                f"${_ENV_EXECUTABLE} points to {path}, which does not exist; set it to the azurite-blob "
                "executable or unset it to use node_modules/.bin/azurite-blob"
            )
        return path
    starts = search_from if search_from is not None else (Path(__file__).parent, Path.cwd())
    for start in (Path(p).resolve() for p in starts):
        for directory in (start, *start.parents):
            candidate = directory / _BIN_RELATIVE
            if candidate.exists():
                return candidate
    raise AzuriteError(
        "azurite-blob was not found in node_modules/.bin of the repository; run scripts/bootstrap.sh "
        f"to install it, or set ${_ENV_EXECUTABLE} to an azurite-blob executable"
    )


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Kills Azurite and removes its data directory once its stdin reaches end-of-file, which happens when
# the Python process that holds the other end of the pipe exits for any reason, SIGKILL included.
_WATCHDOG_SCRIPT = """
read -r _ignored
kill -TERM "$1" 2>/dev/null
n=0
while kill -0 "$1" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
kill -KILL "$1" 2>/dev/null
rm -rf "$2"
"""


def _start_watchdog(pid: int, data_dir: str) -> subprocess.Popen[bytes]:
    """Guard against a test run killed from outside (timeout, Ctrl-C twice, OOM): without it the
    Azurite process and its data directory would outlive us on a machine others share."""
    return subprocess.Popen(
        ["/bin/sh", "-c", _WATCHDOG_SCRIPT, "azurite-watchdog", str(pid), data_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _terminate(
    process: subprocess.Popen[bytes], watchdog: subprocess.Popen[bytes] | None, data_dir: str | None
) -> None:
    """Stop the process (SIGTERM, then SIGKILL after a grace period) and remove its data directory.

    The watchdog goes first, so it can never signal a recycled process id later. A module-level
    function so a ``weakref.finalize`` can call it without keeping the owner alive.
    """
    if watchdog is not None and watchdog.poll() is None:
        watchdog.kill()
        watchdog.wait()
    if watchdog is not None and watchdog.stdin is not None:
        watchdog.stdin.close()
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except ProcessLookupError:
            pass
    if data_dir is not None:
        shutil.rmtree(data_dir, ignore_errors=True)


class Azurite:
    """One Azurite blob server on a free 127.0.0.1 port with a private temporary data directory.

    Use it as a context manager (``with Azurite() as azurite`` or ``async with``), or call
    :meth:`start` and :meth:`stop` yourself. :attr:`connection_string` is ready for
    ``dtf_sb.storage.create_blob_service_client``. ``skip_api_version_check=False`` starts it the way
    developers often run it by hand, to check that clients pin an API version Azurite accepts.
    """

    def __init__(
        self,
        *,
        executable: str | os.PathLike[str] | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
        skip_api_version_check: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self._executable = Path(executable) if executable is not None else None
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._skip_api_version_check = skip_api_version_check
        self._extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._data_dir: str | None = None
        self._port: int | None = None
        self._finalizer: weakref.finalize[..., None] | None = None

    def __repr__(self) -> str:
        state = f"port={self._port}" if self.running else "stopped"
        return f"Azurite({state})"

    # -- account details -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._port is None:
            raise AzuriteError("Azurite is not running; call start() first")
        return self._port

    @property
    def account_name(self) -> str:
        return DEVSTORE_ACCOUNT_NAME

    @property
    def account_key(self) -> str:
        return DEVSTORE_ACCOUNT_KEY

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise AzuriteError("Azurite is not running; call start() first")
        return Path(self._data_dir)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Azurite:
        """Start Azurite and wait (bounded) until its blob port accepts connections.

        A port picked as free can be taken by another process before Azurite binds it; when Azurite
        exits early on a port we chose, we retry on a new port a few times before giving up.
        """
        if self.running:
            return self
        executable = self._executable or find_azurite_executable()
        if shutil.which("node") is None:
            raise AzuriteError("node is not on PATH; Azurite needs Node.js (run scripts/bootstrap.sh)")
        attempts = 1 if self._requested_port is not None else _START_ATTEMPTS
        last_error: AzuriteError | None = None
        for _ in range(attempts):
            try:
                self._start_once(executable)
                return self
            except AzuriteError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def _start_once(self, executable: Path) -> None:
        port = self._requested_port or _free_loopback_port()
        data_dir = tempfile.mkdtemp(prefix="dtf-sb-azurite-")
        log_path = Path(data_dir) / "azurite.log"
        args = [
            str(executable),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            data_dir,
            "--silent",
            *(["--skipApiVersionCheck"] if self._skip_api_version_check else []),
            "--loose",
            "--disableTelemetry",
            *self._extra_args,
        ]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
                start_new_session=True,
            )
        watchdog = _start_watchdog(process.pid, data_dir)
        finalizer = weakref.finalize(self, _terminate, process, watchdog, data_dir)
        deadline = time.monotonic() + self._startup_timeout
        while True:
            if process.poll() is not None:
                output = log_path.read_text(errors="replace").strip()
                finalizer()
                raise AzuriteError(
                    f"Azurite exited with code {process.returncode} before its blob port {port} opened: "
                    f"{output[-2000:] or '(no output)'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                finalizer()
                raise AzuriteError(
                    f"Azurite did not open 127.0.0.1:{port} within {self._startup_timeout:.0f} s"
                )
            time.sleep(0.05)
        self._process = process
        self._data_dir = data_dir
        self._port = port
        self._finalizer = finalizer

    def stop(self) -> None:
        """Terminate Azurite and delete its data directory. Safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._process = None
        self._data_dir = None
        self._port = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Azurite:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
