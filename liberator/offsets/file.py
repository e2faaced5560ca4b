"""Positions in one JSON file, replaced atomically and fsynced so a crash leaves the old or the new.

A file that cannot be read at all (not UTF-8, not JSON, not an offsets document) is refused with one
line naming the fix; `reset_all` (`liberator offsets reset CONFIG`) then moves it aside to
`<path>.corrupt-<UTC time>` rather than deleting it, since nothing in it can be trusted but an operator
may still want to read it. One damaged source entry spoils only that source: resetting or setting it
rewrites the file without it and keeps the others.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from liberator.errors import ConfigError, one_line
from liberator.offsets.base import CorruptOffsets, OffsetStore, StoredOffset


class FileOffsetStore(OffsetStore):
    def __init__(self, path: str | Path, app: str) -> None:
        self.path = Path(path)
        self.app = app
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"file {self.path}"

    def _unreadable(self, reason: str) -> CorruptOffsets:
        return CorruptOffsets(
            f"offsets file {self.path} {reason}; restore it from a backup, or run `liberator offsets reset "
            "CONFIG` to move it aside and start every source over"
        )

    def _read(self) -> dict[str, Any]:
        """The whole document, its shape checked; source entries are checked by `load_all`."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {"app": self.app, "sources": {}}
        except OSError as exc:
            raise ConfigError(f"cannot read offsets file {self.path}: {exc.strerror}; fix offsets.path") from None
        try:
            document = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise self._unreadable(f"is not text (byte {exc.start} is not UTF-8)") from None
        except json.JSONDecodeError as exc:
            raise self._unreadable(f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(document, dict) or not isinstance(document.get("sources", {}), dict):
            raise self._unreadable("is not an offsets file (not an object with app and sources)")
        if document.get("app") != self.app:
            raise ConfigError(
                f"offsets file {self.path} belongs to app {one_line(repr(document.get('app')), 60)}, not "
                f"{self.app!r}; give each app its own offsets.path"
            )
        return document

    def load_all(self) -> dict[str, StoredOffset]:
        with self._lock:
            sources = self._read().get("sources", {})
        found: dict[str, StoredOffset] = {}
        for name, doc in sources.items():
            try:
                found[name] = StoredOffset.from_json(doc)
            except ValueError as exc:
                raise CorruptOffsets(
                    f"offsets file {self.path}: the position of source {one_line(repr(name), 60)} is damaged "
                    f"({exc}); run `liberator offsets reset CONFIG --source {name}` to start it over, or "
                    f"`liberator offsets set CONFIG --source {name} POSITION` to give it one",
                    source=name,
                ) from None
        return found

    def save(self, offset: StoredOffset) -> None:
        with self._lock:
            data = self._read()
            data.setdefault("sources", {})[offset.source] = offset.to_json()
            self._write(data)

    def reset(self, source: str) -> None:
        with self._lock:
            try:
                data = self._read()
            except CorruptOffsets as exc:
                raise CorruptOffsets(
                    f"{exc} (not --source: nothing in the file can be kept for the other sources)", exc.source
                ) from None
            data.get("sources", {}).pop(source, None)
            self._write(data)

    def reset_all(self, sources: Iterable[str]) -> str | None:
        with self._lock:
            try:
                data = self._read()
            except CorruptOffsets:
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
                aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
                os.replace(self.path, aside)
                self._sync_dir()
                return f"moved the unreadable {self.path} aside to {aside}"
            for source in sources:
                data.get("sources", {}).pop(source, None)
            self._write(data)
            return None

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self._sync_dir()

    def _sync_dir(self) -> None:
        # The rename itself must reach the disk, or a crash could bring back the old file.
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
