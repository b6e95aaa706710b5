"""Jump-start records: the client's note of a start, written before it sends ExecutionStarted.

Scheduling an orchestration writes to two systems (this store and the orchestrator queue). If the send
is lost, the record remains, and the jump-start manager re-sends the start once the record's grace
window has passed without the execution showing up (DTF: scan every 5 s, 10 minute window). Each record
is tagged with ``due``, the start of its current grace window (creation, then each re-send), so the scan
is one tag query instead of a listing.
"""

from __future__ import annotations

from datetime import datetime

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from dtf_sb.storage.layout import BlobContainer, InstanceLayout, gather_bounded
from dtf_sb.storage.naming import decode_metadata, encode_metadata, format_time, instance_tag, parse_time
from dtf_sb.storage.records import JumpStartRecord

__all__ = ["JUMP_START_KIND", "JumpStarts"]

JUMP_START_KIND = "jumpstart"


def _tags(instance_id: str, due: str) -> dict[str, str]:
    return {"kind": JUMP_START_KIND, "due": due, "iid": instance_tag(instance_id)}


class JumpStarts:
    """Jump-start records of one hub, inside the instances container."""

    def __init__(self, container: BlobContainer) -> None:
        self._container = container

    async def put(
        self, instance_id: str, execution_id: str, encoded_start_message: bytes, created_time: datetime
    ) -> bool:
        created = format_time(created_time)
        metadata = encode_metadata({"instance": instance_id, "execution": execution_id, "created": created})
        try:
            await self._container.upload(
                InstanceLayout.jump_start(instance_id, execution_id),
                encoded_start_message,
                metadata=metadata,
                tags=_tags(instance_id, created),
                match_condition=MatchConditions.IfMissing,
            )
        except ResourceExistsError:
            return False
        return True

    async def read(self, blob_name: str) -> JumpStartRecord | None:
        try:
            stream = await self._container.client.get_blob_client(blob_name).download_blob()
        except ResourceNotFoundError:
            return None
        data = await stream.readall()
        fields = decode_metadata(stream.properties.metadata)
        sent = fields.get("sent")
        return JumpStartRecord(
            instance_id=fields["instance"],
            execution_id=fields["execution"],
            created_time=parse_time(fields["created"]),
            last_sent_time=parse_time(sent) if sent else None,
            message=data,
        )

    async def of_instance(self, instance_id: str) -> list[JumpStartRecord]:
        names = [b.name for b in await self._container.list(InstanceLayout.jump_starts_prefix(instance_id))]
        return [r for r in await gather_bounded(self.read, names) if r is not None]

    async def due(self, older_than: datetime, limit: int) -> list[JumpStartRecord]:
        cutoff = format_time(older_than)
        expression = f"\"kind\" = '{JUMP_START_KIND}' AND \"due\" < '{cutoff}'"
        names: list[str] = []
        try:
            async for item in self._container.client.find_blobs_by_tags(expression):
                names.append(item.name)
                if len(names) >= limit:
                    break
        except ResourceNotFoundError:
            return []
        records = [r for r in await gather_bounded(self.read, names) if r is not None]
        # the tag index can lag behind a re-send on a real account: trust the record itself
        return [r for r in records if format_time(r.due_time) < cutoff]

    async def mark_sent(self, instance_id: str, execution_id: str, sent_time: datetime) -> bool:
        blob = self._container.client.get_blob_client(InstanceLayout.jump_start(instance_id, execution_id))
        sent = format_time(sent_time)
        try:
            properties = await blob.get_blob_properties()
            fields = decode_metadata(properties.metadata)
            fields["sent"] = sent
            await blob.set_blob_metadata(encode_metadata(fields))
            await blob.set_blob_tags(_tags(instance_id, sent))
        except ResourceNotFoundError:
            return False
        return True

    async def delete(self, instance_id: str, execution_id: str) -> bool:
        return bool(await self._container.delete([InstanceLayout.jump_start(instance_id, execution_id)]))
