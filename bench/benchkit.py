"""What every benchmark here shares: the result table, the servers, timing the daemon to the last ack.

Imported as a sibling module (`from benchkit import ...`): `python bench/<name>.py` puts this folder
first on sys.path.
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, cast

import liberator_testbed as testbed
from liberator.capture import ChangeBatch
from liberator.config import load_config
from liberator.events import ChangeEvent, SourceItem
from liberator.positions import Position
from liberator.runtime import Daemon
from liberator.source import Source


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ResultTable:
    """Phases with a count and a time, printed as rates and ratios to one reference phase of the same run."""

    def __init__(self, unit: str = "rows", extra: str = "") -> None:
        self.unit = unit
        self.extra = extra  # the title of one more text column (e.g. queries per event), or ""
        self.rows: list[tuple[str, int, float, str, float]] = []  # phase, count, seconds, extra, peak RSS MiB

    def add(self, phase: str, count: int, seconds: float, extra: str = "") -> None:
        self.rows.append((phase, count, seconds, extra, peak_rss_mb()))
        print(f"  {phase}: {count} {self.unit} in {seconds:.2f}s", flush=True)

    def print(self, reference: str, note: str = "") -> None:
        base = next(n / s for phase, n, s, _, _ in self.rows if phase == reference)
        width = max(len("phase"), *(len(phase) for phase, *_ in self.rows))
        rate_title = f"{self.unit}/s"
        extra_width = max([len(self.extra)] + [len(e) for *_, e, _ in self.rows]) if self.extra else 0
        header = f"{'phase':<{width}} {self.unit:>8} {'seconds':>8} {rate_title:>10} {'ratio':>6}"
        header += f" {self.extra:>{extra_width}}" if self.extra else ""
        header += f" {'peak RSS':>9}"
        print("\n" + header + "\n" + "-" * len(header))
        for phase, n, secs, extra, rss in self.rows:
            rate = n / secs if secs > 0 else float("inf")
            line = f"{phase:<{width}} {n:>8} {secs:>8.2f} {rate:>10.0f} {rate / base:>6.2f}"
            line += f" {extra:>{extra_width}}" if self.extra else ""
            print(f"{line} {rss:>7.0f}MB")
        print(f"ratio = {rate_title} / {rate_title} of '{reference}'; peak RSS = this process's high-water mark so far")
        if note:
            print(note)


@contextlib.contextmanager
def servers(database: str | None) -> Iterator[tuple[Any, str, str]]:
    """(database server or None, broker bootstrap, registry url) from the test bed; all stopped on the way out.

    `database`: "postgresql", "mariadb" (MySQL 8 under LIBERATOR_TESTBED=testcontainers) or None.
    """
    with contextlib.ExitStack() as stack:
        db: Any = None
        if database is not None:
            db = testbed.start_postgres() if database == "postgresql" else testbed.start_mariadb()
            stack.callback(db.stop)
        broker = testbed.start_broker()
        stack.callback(broker.stop)
        registry = testbed.start_registry()
        stack.callback(registry.stop)
        yield db, broker.bootstrap_servers, registry.url


def daemon_until_acked(config: Path, count: int, source: str = "bench") -> float:
    """Run the daemon of `config` until `source` has `count` events acknowledged; seconds from start."""
    daemon = Daemon(load_config(config))
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    t0 = time.perf_counter()
    thread.start()
    try:
        while source not in daemon.metrics.sources and thread.is_alive():
            time.sleep(0.001)  # a poll interval
        status = daemon.metrics.sources.get(source)
        if status is None:
            raise SystemExit("the daemon stopped before its source started; see the log above")
        in_flight = 0
        while status.events_acked < count:
            in_flight = max(in_flight, status.events_published - status.events_acked)
            if status.state == "failed" or not thread.is_alive():
                raise SystemExit(
                    f"daemon stopped at {status.events_acked}/{count} acked: {status.state} {status.error}"
                )
            time.sleep(0.002)  # a poll interval
        print(f"  (at most {in_flight} events published but not yet acknowledged)", flush=True)
        return time.perf_counter() - t0
    finally:
        daemon.stop.set()
        thread.join(60)


def count_events(source: Source, start: Position | None, count: int, stop: threading.Event) -> int:
    """Iterate `source.read(start)` until `count` row changes (or a connector's own records) came out: the
    source alone, no Avro, no Kafka."""
    items = cast(Generator[SourceItem, None, None], source.read(start))  # a generator, so it can be closed
    seen = 0
    try:
        for item in items:
            if isinstance(item, ChangeBatch):
                seen += len(item.items)
            elif isinstance(item, ChangeEvent):
                seen += 1
            if seen >= count:
                break
    finally:
        stop.set()
        items.close()
        source.close()
    return seen
