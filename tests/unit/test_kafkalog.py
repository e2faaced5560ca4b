"""librdkafka's lines are folded: the first of each problem, then a count at most every interval."""

from __future__ import annotations

import logging

from liberator.kafkalog import RepeatFolder


def line(client: str, text: str, level: int = logging.ERROR) -> logging.LogRecord:
    # confluent_kafka logs (facility, client name, message) with this format.
    return logging.LogRecord("liberator.kafka", level, "", 0, "%s [%s] %s", ("FAIL", client, text), None)


REFUSED = "[thrd:b:1/bootstrap]: b:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"


def test_repeats_of_one_problem_fold_into_a_count() -> None:
    now = [0.0]
    folder = RepeatFolder(interval=60, clock=lambda: now[0])
    assert folder.filter(line("rdkafka#producer-1", f"{REFUSED} (after 0ms in state CONNECT)"))
    shown = []
    for i in range(1, 200):  # every 50 ms, from the producer, the admin client and a consumer alike
        now[0] = i * 0.05
        client = ("rdkafka#producer-1", "rdkafka#consumer-2", "liberator-app#producer-3")[i % 3]
        record = line(client, f"{REFUSED} (after {i % 7}ms in state CONNECT, 1 identical error(s) suppressed)")
        if folder.filter(record):
            shown.append(record)
    assert shown == []
    now[0] = 61.0
    record = line("rdkafka#consumer-2", f"{REFUSED} (after 1ms in state CONNECT)")
    assert folder.filter(record)
    assert record.getMessage().endswith("(and 199 more like it in the last 61s)")
    now[0] = 62.0
    assert not folder.filter(line("rdkafka#consumer-2", REFUSED))


def test_distinct_problems_each_get_their_line() -> None:
    folder = RepeatFolder(interval=60, clock=lambda: 0.0)
    assert folder.filter(line("rdkafka#producer-1", REFUSED))
    assert folder.filter(line("rdkafka#producer-1", REFUSED.replace("127.0.0.1:1", "127.0.0.2:1")))
    assert folder.filter(line("rdkafka#producer-1", REFUSED, level=logging.WARNING))
    assert not folder.filter(line("rdkafka#producer-1", REFUSED))
