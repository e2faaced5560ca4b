"""Where source positions are kept between runs."""

from __future__ import annotations

from liberator.config import AppConfig
from liberator.offsets.base import OffsetStore, StoredOffset
from liberator.offsets.file import FileOffsetStore
from liberator.offsets.kafka import KafkaOffsetStore

__all__ = ["FileOffsetStore", "KafkaOffsetStore", "OffsetStore", "StoredOffset", "open_store"]


def open_store(config: AppConfig) -> OffsetStore:
    if config.offsets.store == "file":
        assert config.offsets.path is not None  # checked at config load
        return FileOffsetStore(config.offsets.path, app=config.name)
    return KafkaOffsetStore(
        bootstrap_servers=config.kafka.bootstrap_servers,
        settings=config.kafka.settings,
        topic=config.offsets.topic,
        app=config.name,
        create_topic=config.kafka.create_topics,
    )
