"""The broker: Service Bus semantics as a synchronous state machine over an injected clock.

The AMQP server calls these methods from its event loop; nothing here blocks, sleeps or does I/O. Time-driven
changes (lock expiry, scheduled messages coming due, TTL expiry, session lock expiry) happen in ``tick()``,
which every public method also runs first, so results never depend on whether the server ticked on time.
``next_deadline()`` tells the server how long it may sleep.

Choices where Service Bus leaves room:
* A peek-locked message whose receiver went away stays locked until its lock expires (Service Bus ties the
  lock to the message, not the link); ``release_owner`` only unlocks that owner's sessions.
* Releasing or losing a session returns its unsettled messages with delivery count + 1, as an abandon would.
* Messages do not expire while locked; they expire as soon as the lock ends. Dead-letter queues never expire.
* A duplicate send is accepted and dropped; ``schedule`` answers a duplicate with the original sequence
  number.
* Sequence numbers are per sendable entity. A forwarded or topic-fanned message gets a new number in the
  entity it lands in and keeps the first one as ``enqueued_sequence_number``; dead-lettered messages keep
  their number.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._base import AvailabilityListener, SessionLostListener, operation
from .clock import Clock
from .delivery import DeliveryMixin
from .entities import EntityProperties
from .messages import EntityCounts, MessageState
from .routing import RoutingMixin
from .sessions import SessionMixin

__all__ = ["AvailabilityListener", "Broker", "SessionLostListener"]


class Broker(RoutingMixin, DeliveryMixin, SessionMixin):
    """All entities of one emulated namespace.

    ``entities`` are queue and topic properties (see ``dtf_sb.emulator.config`` to load them from a
    Config.json); ``clock`` defaults to the wall clock. Listener callbacks run synchronously at the end of
    the operation that caused them and may call back into the broker.
    """

    def __init__(self, entities: Iterable[EntityProperties], *, clock: Clock | None = None) -> None:
        super().__init__(entities, clock=clock)

    # ------------------------------------------------------------------------------------------- counts

    @operation
    def entity_counts(self, path: str) -> EntityCounts:
        """Counts of one queue, subscription, dead-letter queue, or (summed over subscriptions) topic."""
        self._process_time()
        ref = self._refs[self._key(path)]
        if ref.kind == "topic":
            parts = [self.entity_counts(sub.path) for sub in self._sendables[ref.path.lower()].subscriptions]
            return (
                EntityCounts(*(sum(values) for values in zip(*parts, strict=True)))
                if parts
                else EntityCounts(0, 0, 0, 0, 0)
            )
        store = self._stores[ref.path.lower()]
        active = scheduled = deferred = locked = 0
        for msg in store.messages.values():
            if msg.lock_token is not None:
                locked += 1
            elif msg.state == MessageState.ACTIVE:
                active += 1
            elif msg.state == MessageState.SCHEDULED:
                scheduled += 1
            else:
                deferred += 1
        dead = 0
        if ref.sub_queue is None:
            dead = len(self._receivables[ref.path.lower()].dead_letter)
        return EntityCounts(active, scheduled, deferred, dead, locked)
