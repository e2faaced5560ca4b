"""Streamed changes that a re-snapshot already covers: which are skipped, which deletes still go out.

A CDC source whose snapshot was interrupted by a crash streams from the first snapshot's point P, but reads
the unfinished tables again in a newer snapshot at P2. That read already holds every change committed before
P2, so streamed inserts and updates of those rows from before P2 are skipped: publishing them after the read
would put an older version after a newer one.

A delete is different. The interrupted first read may have published the row, and the read at P2, which no
longer holds it, cannot retract it: skipping the delete leaves a ghost row on the topic. So a delete from
before P2 is published (change event and tombstone, as usual) iff its key is absent from the live table when
checked, which is after P2:
- absent now: every later change of the key commits after now, so it is streamed after this delete;
- present now: either the read at P2 had the row (and its later changes are streamed) or it was inserted
  again after P2 (and that insert is streamed).
Either way the topic folded by key ends equal to the table. Both CDC sources apply this rule here.
"""

from __future__ import annotations

from collections.abc import Callable

from liberator.envelope import Op


def publish_covered(op: Op, key_present: Callable[[], bool]) -> bool:
    """Whether a change that a later snapshot read already covers is published all the same.

    `key_present` looks the change's key up in the live table; it is called for deletes only.
    """
    return op is Op.delete and not key_present()
