"""Positions in one JSON file, replaced atomically and fsynced so a crash leaves the old or the new."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from liberator.errors import ConfigError
from liberator.offsets.base import OffsetStore, StoredOffset


class FileOffsetStore(OffsetStore):
    def __init__(self, path: str | Path, app: str) -> None:
        self.path = Path(path)
        self.app = app
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"file {self.path}"

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {"app": self.app, "sources": {}}
        except OSError as exc:
            raise ConfigError(f"cannot read offsets file {self.path}: {exc.strerror}; fix offsets.path") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"offsets file {self.path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                "restore it from a backup or run `liberator offsets reset` to start over"
            ) from None
        if data.get("app") != self.app:
            raise ConfigError(
                f"offsets file {self.path} belongs to app {data.get('app')!r}, not {self.app!r}; "
                "give each app its own offsets.path"
            )
        return dict(data)

    def load_all(self) -> dict[str, StoredOffset]:
        with self._lock:
            sources = self._read().get("sources", {})
        return {name: StoredOffset.from_json(doc) for name, doc in sources.items()}

    def save(self, offset: StoredOffset) -> None:
        with self._lock:
            data = self._read()
            data.setdefault("sources", {})[offset.source] = offset.to_json()
            self._write(data)

    def reset(self, source: str) -> None:
        with self._lock:
            data = self._read()
            data.get("sources", {}).pop(source, None)
            self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        # The rename itself must reach the disk, or a crash could bring back the old file.
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
