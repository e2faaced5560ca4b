"""`route:` the topic a table's events go to, by template or by one column's value (docs/transforms.md).

- `{topic: "crm.{table}"}`: every event of the table to one topic, a template with the placeholders of the
  source's `topic` ({source}, {app}, {schema}, {table}); decided once per table, so it costs nothing per row.
- `{by: region, topics: {eu: orders.eu, us: orders.us}, default: orders.other}`: each row to the topic its
  column's value maps to (the value's text, as YAML writes the map's keys), else `default`; a value with no
  topic (null, not in the map, no default) stops the source with a `RouteError` naming table, column and
  value. The topics are the config's own names (templates too), never made from the data.

Keys and tombstones follow their row: a delete goes to the topic of its old row's value, and an update that
changes the value is a delete (and tombstone) on the old topic and a create on the new one, so each topic,
folded by key, holds exactly the table's rows that route to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from liberator.errors import SchemaError, TransformError
from liberator.schema import TableSchema


class RouteRule(BaseModel):
    """Give `topic`, or `by` with `topics` and/or `default`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str | None = Field(
        None, description="every event to this topic: a template with {source} {app} {schema} {table}"
    )
    by: str | None = Field(None, description="the column whose value picks the topic (the database's column name)")
    topics: dict[str, str] = Field({}, description="topic (template) per value of `by`: {eu: orders.eu, us: orders.us}")
    default: str | None = Field(
        None, description="the topic (template) of values not in `topics`; absent: such a row is an error"
    )

    @field_validator("topics", mode="before")
    @classmethod
    def _values_as_text(cls, value: Any) -> Any:
        # YAML reads `1:` and `true:` as an int and a bool: the map is keyed by the text a value matches.
        if isinstance(value, dict):
            return {route_text(k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one_way(self) -> RouteRule:
        if (self.topic is None) == (self.by is None):
            raise ValueError("give `topic` (one topic for the table) or `by` (a column whose value picks it)")
        if self.topic is not None and (self.topics or self.default is not None):
            raise ValueError("`topics` and `default` go with `by`, not with `topic`")
        if self.by is not None and not self.topics and self.default is None:
            raise ValueError(f"route by {self.by}: give `topics` ({{value: topic}}) and/or a `default` topic")
        return self


def route_text(value: Any) -> str:
    """The text a column value (or a YAML key of `topics`) is matched by: booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RouteByColumn:
    """A compiled `route: {by: ...}` of one table version, over its published values (the database's names,
    before masks): the topics are rendered once."""

    __slots__ = ("column", "default", "index", "key_position", "name", "topics")

    def __init__(self, name: str, shape: TableSchema, rule: RouteRule, render: Callable[[str], str]) -> None:
        assert rule.by is not None
        names = [c.name for c in shape.columns]
        if rule.by not in names:
            raise SchemaError(
                f"table {name}: `route.by` names {rule.by}, not a published column; choose one of {names}"
            )
        self.name = name
        self.column = rule.by
        self.index = names.index(rule.by)
        # Where the column is in the key (deletes without their old row carry only the key), else None.
        self.key_position = shape.key.index(rule.by) if rule.by in shape.key else None
        self.topics = {value: render(topic) for value, topic in rule.topics.items()}
        self.default = None if rule.default is None else render(rule.default)

    def all_topics(self) -> list[str]:
        """Every topic a row may go to (a truncate is published on each)."""
        topics = list(dict.fromkeys(self.topics.values()))
        if self.default is not None and self.default not in topics:
            topics.append(self.default)
        return topics

    def topic(self, row: Sequence[Any]) -> str:
        return self._topic_of(row[self.index])

    def topic_of_old(self, before: Sequence[Any] | None, key: Sequence[Any] | None) -> str:
        """The topic a deleted (or changed) row was routed to: by its old row, else by its key."""
        if before is not None:
            return self._topic_of(before[self.index])
        if self.key_position is not None and key is not None:
            return self._topic_of(key[self.key_position])
        raise TransformError(
            f"table {self.name}: a delete arrived without its old row, so `route.by: {self.column}` cannot tell "
            "its topic; give the table full old rows (PostgreSQL: ALTER TABLE ... REPLICA IDENTITY FULL; "
            "MySQL: binlog_row_image=FULL) or route by a key column"
        )

    def _topic_of(self, value: Any) -> str:
        topic = None if value is None else self.topics.get(route_text(value))
        if topic is None:
            topic = self.default
            if topic is None:
                raise TransformError(
                    f"table {self.name}: cannot route a row with {self.column} = {value!r}: no topic in "
                    "`route.topics` for it and no `route.default`; add one of them"
                )
        return topic
