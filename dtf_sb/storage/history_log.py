"""An execution's history as an append blob of JSON lines, appended exactly once per event.

Each stored line is ``{"i":<event index>,"e":<event JSON>}`` followed by ``\\n``. Carrying the index in
the line is what makes appends idempotent without any bookkeeping outside the blob: the last complete
line of the blob says how many events are stored, so a crash between the append and anything else leaves
nothing to reconcile.

Appending a batch that starts at event ``k``:

1. Read the blob's size ``S`` and its tail; the last complete line gives ``n`` (events stored), and any
   bytes after the last newline are a *fragment* (a batch larger than one block that was cut short).
2. ``k + len(batch) <= n``: a redelivery of a batch that was already appended; nothing to do.
   ``k > n``: events ``n..k-1`` were never tracked; :class:`HistoryGapError`.
   Otherwise the lines from ``n`` on are framed; a fragment must be a prefix of those bytes (the same
   batch, redelivered) and only the rest is written.
3. Every block is appended with ``appendpos_condition`` = the size we computed. If anyone appended in
   between (a second tracking worker, or the SDK retrying a block whose first attempt did land) the
   service answers 412 and we start again at step 1, where step 2 now sees the events as stored. Without
   the condition, an SDK retry after a timeout would write the block twice.

A per-store cache of (size, next index) skips step 1 in the common case; it is only a hint, because the
append-position condition rejects the write if the cache is stale, and a "nothing to do" decision is
never taken from the cache alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobClient, ContainerClient

from dtf_sb.storage.errors import HistoryConflictError, HistoryGapError, StorageError

__all__ = ["DEFAULT_BLOCK_SIZE", "HistoryLog", "frame_lines", "parse_lines"]

#: Append Block accepts at most 4 MiB on every API version Azurite and older SDKs speak.
DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
_PREFIX = b'{"i":'
_SEPARATOR = b',"e":'
_TAIL_WINDOW = 4096
_MAX_ATTEMPTS = 8
_CACHE_ENTRIES = 4096


def frame_lines(first_index: int, lines: Sequence[bytes]) -> bytes:
    """The exact bytes stored for ``lines`` starting at event ``first_index``."""
    return b"".join(
        b"%s%d%s%s}\n" % (_PREFIX, first_index + offset, _SEPARATOR, line)
        for offset, line in enumerate(lines)
    )


def _parse_line(line: bytes) -> tuple[int, bytes]:
    if not line.startswith(_PREFIX) or not line.endswith(b"}"):
        raise HistoryConflictError(f"history line is not in the stored format: {line[:80]!r}")
    separator = line.find(_SEPARATOR, len(_PREFIX))
    if separator < 0:
        raise HistoryConflictError(f"history line has no event part: {line[:80]!r}")
    return int(line[len(_PREFIX) : separator]), line[separator + len(_SEPARATOR) : -1]


def parse_lines(data: bytes) -> list[bytes]:
    """The event lines of a stored history; an incomplete last line (a cut-short batch) is ignored."""
    complete, _, _fragment = data.rpartition(b"\n")
    if not complete and not data.endswith(b"\n"):
        return []
    events: list[bytes] = []
    for expected, raw in enumerate(complete.split(b"\n")):
        index, event = _parse_line(raw)
        if index != expected:
            raise HistoryConflictError(f"history line {expected} carries index {index}; the blob is corrupt")
        events.append(event)
    return events


def _is_append_position_mismatch(exc: HttpResponseError) -> bool:
    return exc.status_code == 412 and exc.error_code == "AppendPositionConditionNotMet"


class HistoryLog:
    """Idempotent appends and reads of history blobs in one container."""

    def __init__(
        self,
        container: ContainerClient,
        *,
        ensure_container: Callable[[], Awaitable[None]],
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self._container = container
        self._ensure_container = ensure_container
        self._block_size = block_size
        self._positions: OrderedDict[str, tuple[int, int]] = OrderedDict()

    async def read(self, blob_name: str) -> list[bytes] | None:
        """All events of one history blob, or ``None`` when there is no blob."""
        try:
            stream = await self._container.get_blob_client(blob_name).download_blob()
        except ResourceNotFoundError:
            return None
        return parse_lines(await stream.readall())

    async def append(
        self,
        blob_name: str,
        *,
        instance_id: str,
        execution_id: str,
        first_event_index: int,
        lines: Sequence[bytes],
    ) -> int:
        """Append events ``first_event_index..`` unless stored already; returns how many were written."""
        if first_event_index < 0:
            raise ValueError("first_event_index must be >= 0")
        for line in lines:
            if b"\n" in line:
                raise ValueError("a history line must not contain a newline")
        if not lines:
            return 0
        blob = self._container.get_blob_client(blob_name)
        cached = self._positions.pop(blob_name, None)
        if cached is not None and cached[1] == first_event_index:
            written = await self._try_write(blob, frame_lines(first_event_index, lines), cached[0])
            if written is not None:
                self._remember(blob_name, written, first_event_index + len(lines))
                return len(lines)
        for _ in range(_MAX_ATTEMPTS):
            size = await self._size_or_create(blob)
            stored, fragment = await self._tail(blob, size)
            end = first_event_index + len(lines)
            if end <= stored:
                if not fragment:
                    self._remember(blob_name, size, stored)
                return 0
            if first_event_index > stored:
                raise HistoryGapError(instance_id, execution_id, stored, first_event_index)
            remaining = lines[stored - first_event_index :]
            payload = frame_lines(stored, remaining)
            if fragment:
                if not payload.startswith(fragment):
                    raise HistoryConflictError(
                        f"history of instance {instance_id!r} execution {execution_id!r} ends in a partial "
                        f"event {stored} whose bytes differ from the redelivered batch"
                    )
                payload = payload[len(fragment) :]
            written = await self._try_write(blob, payload, size)
            if written is not None:
                self._remember(blob_name, written, end)
                return len(remaining)
        raise StorageError(
            f"history of instance {instance_id!r} execution {execution_id!r}: gave up after "
            f"{_MAX_ATTEMPTS} attempts because other writers kept appending"
        )

    def forget(self, blob_name: str) -> None:
        self._positions.pop(blob_name, None)

    def forget_all(self) -> None:
        self._positions.clear()

    def _remember(self, blob_name: str, size: int, next_index: int) -> None:
        self._positions[blob_name] = (size, next_index)
        self._positions.move_to_end(blob_name)
        while len(self._positions) > _CACHE_ENTRIES:
            self._positions.popitem(last=False)

    async def _try_write(self, blob: BlobClient, payload: bytes, position: int) -> int | None:
        """Append ``payload`` at ``position`` in blocks; ``None`` when the blob is not as expected."""
        try:
            for offset in range(0, len(payload), self._block_size):
                block = payload[offset : offset + self._block_size]
                await blob.append_block(block, appendpos_condition=position)
                position += len(block)
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            if _is_append_position_mismatch(exc):
                return None
            raise
        return position

    async def _size_or_create(self, blob: BlobClient) -> int:
        for attempt in range(2):
            try:
                return int((await blob.get_blob_properties()).size)
            except ResourceNotFoundError:
                pass
            try:
                await blob.create_append_blob(match_condition=MatchConditions.IfMissing)
                return 0
            except ResourceExistsError:
                continue  # created concurrently: read its size
            except ResourceNotFoundError:
                if attempt:
                    raise
                await self._ensure_container()
        return int((await blob.get_blob_properties()).size)

    async def _tail(self, blob: BlobClient, size: int) -> tuple[int, bytes]:
        """Events stored (index of the last complete line + 1) and the bytes after the last newline."""
        if size == 0:
            return 0, b""
        window = _TAIL_WINDOW
        while True:
            start = max(0, size - window)
            data = await (await blob.download_blob(offset=start, length=size - start)).readall()
            last_newline = data.rfind(b"\n")
            if last_newline < 0:
                if start == 0:
                    return 0, data
                window *= 4
                continue
            previous = data.rfind(b"\n", 0, last_newline)
            if previous < 0 and start > 0:
                window *= 4
                continue
            index, _event = _parse_line(data[previous + 1 : last_newline])
            return index + 1, data[last_newline + 1 :]
