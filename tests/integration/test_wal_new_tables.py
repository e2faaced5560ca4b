"""A table added to a postgres_wal source's `tables` after it ran is backfilled while it streams: its
existing rows go out as reads, its new changes are streamed, and the tables it had are not read again."""

from __future__ import annotations

import random
from pathlib import Path

from tests.integration.postgres_wal_support import WalDb
from tests.support import DaemonThread, app_config, fold_by_key, read_topic, wait_for


def _config(db: WalDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str, tables: str) -> Path:
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: {tables}\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n'
        "    snapshot_chunk: 4\n    envelope: change\n"
    )
    return app_config(tmp_path, kafka_bootstrap, registry_url, wal)


def test_a_table_added_to_the_config_is_backfilled_and_the_others_are_not_read_again(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE first (id int PRIMARY KEY, v int NOT NULL)")
    db.run("CREATE TABLE second (id int PRIMARY KEY, v int NOT NULL)")
    db.run("INSERT INTO first SELECT i, 1 FROM generate_series(1, 5) AS i")
    db.run("INSERT INTO second SELECT i, 1 FROM generate_series(1, 10) AS i")
    first, second = f"{db.tag}.first", f"{db.tag}.second"

    with DaemonThread(_config(db, tmp_path, kafka_bootstrap, registry_url, "[first]")) as daemon:
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, first)) == 5, what="first's snapshot")
        wait_for(lambda: daemon.positions_settled("wal"), what="the position stored")
    db.run("UPDATE second SET v = 2 WHERE id = 3")  # while stopped: the backfill reads it as it is now

    with DaemonThread(_config(db, tmp_path, kafka_bootstrap, registry_url, "[first, second]")):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, second)) >= 10, what="second's rows")
        db.run("UPDATE second SET v = 3 WHERE id = 7")
        db.run("INSERT INTO first VALUES (6, 1)")
        wait_for(
            lambda: (
                {k: v["v"] for k, v in fold_by_key(read_topic(kafka_bootstrap, registry_url, second)).items()}
                == {i: {3: 2, 7: 3}.get(i, 1) for i in range(1, 11)}
            ),
            what="second folded by key to equal the table",
        )
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, first)) == 6, what="first's new row")
    reads = [r for r in read_topic(kafka_bootstrap, registry_url, second) if r["value"]["op"] == "r"]
    assert sorted(r["key"]["id"] for r in reads) == list(range(1, 11)), "each existing row of second, once"
    assert [r["value"]["op"] for r in read_topic(kafka_bootstrap, registry_url, first)] == ["r"] * 5 + ["c"]


def _writes(db: WalDb, rng: random.Random, count: int, keys: range) -> None:
    """Updates of random existing keys and inserts of new ones into grow_b."""
    for _ in range(count):
        if rng.random() < 0.3:
            db.run("INSERT INTO grow_b VALUES (%s, 1) ON CONFLICT (id) DO NOTHING", (rng.choice(keys),))
        else:
            db.run("UPDATE grow_b SET v = v + 1 WHERE id = %s", (rng.randint(1, 200),))


def test_a_table_created_while_streaming_is_captured_and_its_earlier_rows_backfilled(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE first (id int PRIMARY KEY, v int NOT NULL)")
    db.run("CREATE TABLE grow_a (id int PRIMARY KEY, v int NOT NULL)")
    db.run("INSERT INTO first SELECT i, 1 FROM generate_series(1, 5) AS i")
    config = _config(db, tmp_path, kafka_bootstrap, registry_url, '[first, "grow_*"]')
    config.write_text(
        config.read_text().replace("    envelope: change\n", "    envelope: change\n    status_interval: 200ms\n")
    )
    topic = f"{db.tag}.grow_b"
    rng = random.Random(11)
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, f"{db.tag}.first")) == 5, what="the snapshot")
        with db.conn.transaction():  # created and filled in one transaction: these rows come before it is noticed
            db.run("CREATE TABLE grow_b (id int PRIMARY KEY, v int NOT NULL)")
            db.run("INSERT INTO grow_b SELECT i, 1 FROM generate_series(1, 200) AS i")
        _writes(db, rng, 100, range(201, 300))  # while it is being noticed
        wait_for(lambda: read_topic(kafka_bootstrap, registry_url, topic), what="grow_b's first events")
        _writes(db, rng, 200, range(300, 400))  # after: streamed
        table = {row[0]: row[1] for row in db.rows("SELECT id, v FROM grow_b")}
        wait_for(
            lambda: (
                {k: v["v"] for k, v in fold_by_key(read_topic(kafka_bootstrap, registry_url, topic)).items()} == table
            ),
            what="grow_b folded by key to equal the table",
        )
        published = "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND tablename = 'grow_b'"
        assert db.rows(published, (db.tag,)) == [("grow_b",)], "added to the publication"
    records = read_topic(kafka_bootstrap, registry_url, topic)
    assert any(r["value"]["op"] == "r" for r in records), "the rows from before it was noticed were read"
    versions: dict[int, list[int]] = {}
    for record in records:
        versions.setdefault(record["key"]["id"], []).append(record["value"]["after"]["v"])
    for key, seen in versions.items():
        assert seen == sorted(seen), f"key {key}: an older version after a newer one: {seen}"
