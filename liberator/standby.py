"""The source runner's part in the single-writer lease (liberator.lease, docs/ha.md): stand by until the lease
is held, resume from the stored position on taking it, and let go of everything at once on losing it.

A mixin of `liberator.sourcerunner.SourceRunner`, whose attributes it uses (declared below for the type
checker); kept apart so that the runner's hot path reads on its own.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Callable

from confluent_kafka import Producer

from liberator.errors import TransientSourceError
from liberator.inflight import InFlight
from liberator.lease import Lease
from liberator.metrics import SourceStatus
from liberator.offsets.kafka import OffsetStoreUnavailable
from liberator.positions import Position
from liberator.source import AnySource, SourceConfig
from liberator.supervisor import Supervisor


class LeaseTerms:
    source: AnySource
    config: SourceConfig
    status: SourceStatus
    producer: Producer
    window: InFlight
    stop: threading.Event
    log: logging.Logger
    supervisor: Supervisor
    lease: Lease | None
    reload: Callable[[], Position | None]
    stored: Position | None
    resume: Position | None
    _led: bool  # whether this runner held the lease before (then what it published is let go)

    @abstractmethod
    def _wait(self, seconds: float) -> None:
        """Wait while still serving Kafka's acknowledgements (the runner's)."""

    def _lead(self, lease: Lease) -> bool:
        """Hold the lease before the source opens anything (a slot, a binlog stream, a poll); False if stopped
        while standing by. Having just taken it, the source resumes from the stored position: another daemon
        may have moved it on."""
        if lease.held:
            return True
        announced = False
        while not self.stop.is_set():
            if lease.try_acquire():
                break
            if not announced:
                self.source.phase = self.status.phase = "standby"
                self.supervisor.recovered()  # the lease's database answered: standing by is not retrying
                self.log.warning(
                    "another daemon leads source %s (%s); standing by, trying the lease every %gs",
                    self.config.name,
                    lease.holder(),
                    lease.interval,
                )
                announced = True
            self._wait(lease.interval)
        else:
            return False
        self.source.phase = self.status.phase = "starting"
        if self._led:
            self._let_go()  # lost in between (say during a retry): nothing of that term may be stored now
        self._led = True
        try:
            stored = self.reload()
        except OffsetStoreUnavailable as exc:
            lease.release()  # leading without the stored position would replay or skip: let another try
            raise TransientSourceError(f"cannot read the stored position after taking the lease: {exc}") from None
        self.stored = self.resume = stored
        self.source.leased = True
        self.status.position = None if self.stored is None else self.stored.to_json()
        self.log.info(
            "holding the lease %r: leading, from %s",
            lease.name,
            "the beginning" if self.stored is None else self.stored.to_json(),
        )
        return True

    def _step_down(self, reason: str) -> None:
        """The lease is lost: nothing more is published or stored; what waits in the producer is let go
        (the next leader publishes it again from the stored position) and the lease is tried again."""
        self.log.warning("%s: stopped publishing; trying the lease again", reason)
        self.source.close()
        self._let_go()
        # Not "standby" (ready) yet: that is for when another daemon is seen to hold the lease.
        self.source.phase = self.status.phase = "starting"
        self.source.leased = False
        assert self.lease is not None
        self.lease.release()

    def _let_go(self) -> None:
        """Drop what the producer still holds and start a fresh window: the purged records' failures stay
        with the old one, whose positions must never be stored now (another daemon may have moved on)."""
        self.producer.purge(in_queue=True)
        self.producer.poll(0)
        acked = self.window.acked
        self.window = InFlight(self.window.max_events, self.window.max_bytes)
        self.window.acked = self.status.events_published = self.status.events_acked = acked
