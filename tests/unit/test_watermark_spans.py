"""A window's spans (liberator.watermarks): one chunk, or `workers` chunks split at the end keys found first;
the window's last key and whether more rows may follow."""

from __future__ import annotations

from liberator.watermarks import Span, window_end, window_spans


def _never() -> list[tuple[int]]:
    raise AssertionError("one worker needs no end keys")


def test_one_worker_reads_one_chunk_after_the_last_key() -> None:
    assert window_spans((7,), 25, 1, _never) == [Span((7,), None, 25)]


def test_workers_read_contiguous_ranges_between_the_end_keys() -> None:
    assert window_spans(None, 25, 2, lambda: [(25,), (50,)]) == [Span(None, (25,), None), Span((25,), (50,), None)]


def test_near_the_table_end_the_last_chunk_is_open_ended_with_a_limit() -> None:
    spans = window_spans((50,), 25, 3, lambda: [(75,)])
    assert spans == [Span((50,), (75,), None), Span((75,), None, 25)]
    assert window_spans((50,), 25, 2, list) == [Span((50,), None, 25)]  # fewer rows than one chunk left


def test_the_window_ends_at_its_last_range_or_its_last_row() -> None:
    ranges = [Span(None, (25,), None), Span((25,), (50,), None)]
    assert window_end(ranges, [25, 20], [(25,), (49,)]) == ((50,), True)  # rows deleted at the end: on after 50
    open_ended = [Span((50,), (75,), None), Span((75,), None, 25)]
    assert window_end(open_ended, [25, 3], [(75,), (80,)]) == ((80,), False)  # the table's end
    assert window_end(open_ended, [25, 0], [(75,), None]) == ((75,), False)
    assert window_end([Span((9,), None, 25)], [0], [None]) == (None, False)  # nothing left: progress stays
