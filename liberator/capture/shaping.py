"""What a table's `route: {by: ...}`, `headers:` and `hook:` make of one row change: the changes to publish,
each with its topic (docs/transforms.md). Only tables with one of them have a `Shaping`; the others take the
Eventifier's plain path and pay nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from liberator.capture.changes import Op, RowChange
from liberator.capture.headers import Headers, RecordHeaders
from liberator.capture.hooks import HookStage
from liberator.capture.routes import RouteByColumn

# (a change in the table's published shape, its topic, the headers of a tombstone after it or None)
Planned = tuple[RowChange, str, Headers | None]


@dataclass(frozen=True, slots=True)
class Shaping:
    topic: str  # the table's topic where no route by column decides
    router: RouteByColumn | None = None
    headers: RecordHeaders | None = None
    hook: HookStage | None = None

    def plan(self, item: RowChange) -> list[Planned]:
        """The changes to publish for `item` (which the row filter passed), in order.

        Route and headers read the change as the database gave it (published columns, before masks and the
        hook); the hook's output then goes where its input row was routed. A delete goes, with its headers
        and tombstone, where its old row was routed; an update whose row moves to another topic is a delete
        there and a create on the new one.
        """
        op = item.op
        router = self.router
        if op is Op.truncate:
            return [(item, topic, None) for topic in (router.all_topics() if router is not None else [self.topic])]
        new_topic = old_topic = self.topic
        if router is not None:
            if item.after is not None:
                new_topic = old_topic = router.topic(item.after)
            if item.before is not None or (item.key is not None and router.key_position is not None):
                old_topic = router.topic_of_old(item.before, item.key)
            elif op is Op.delete:
                old_topic = router.topic_of_old(None, None)  # raises: no old row to route it by
        new_headers = old_headers = item.headers
        headers = self.headers
        if headers is not None:
            if item.after is not None:
                new_headers = item.headers + headers.of(item.after)
            if op is not Op.create and op is not Op.read:
                old_headers = item.headers + headers.of(item.before, item.key)
        tombstone = old_headers if headers is not None else None
        changes = [item] if self.hook is None else self.hook.apply(item)
        planned: list[Planned] = []
        for change in changes:
            op = change.op
            if op is Op.delete:
                planned.append((_with_headers(change, old_headers), old_topic, tombstone))
            elif op is Op.update and old_topic != new_topic:
                gone = RowChange(change.table, Op.delete, change.txn, change.before, None, change.key, old_headers)
                planned.append((gone, old_topic, tombstone))
                planned.append(
                    (
                        RowChange(change.table, Op.create, change.txn, None, change.after, None, new_headers),
                        new_topic,
                        None,
                    )
                )
            else:
                planned.append((_with_headers(change, new_headers), new_topic, tombstone))
        return planned


def _with_headers(change: RowChange, headers: Headers) -> RowChange:
    if change.headers is headers:
        return change
    return RowChange(change.table, change.op, change.txn, change.before, change.after, change.key, headers)
