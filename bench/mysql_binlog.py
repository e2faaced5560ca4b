"""Binlog source throughput next to bare BinLogStreamReader iteration over the same binlog, in the same run.

    python bench/mysql_binlog.py [--rows 200000] [--tx-rows 1000]

Starts its own MariaDB (or MySQL 8 with LIBERATOR_TESTBED=testcontainers), Kafka-protocol broker and schema
registry (liberator_testbed), notes the binlog point, writes `--rows` inserts into `orders` in transactions of
`--tx-rows`, then reads the same binlog from that point three ways: bare mysql-replication iteration that
decodes every row of the WriteRowsEvents (the 1.00 reference), the source alone (binlog -> events, no Avro,
no Kafka), and the whole daemon, started from a stored position at that point, until Kafka acknowledged every
event (binlog -> Avro -> Kafka). The machine is noisy: read the ratio column.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchkit import ResultTable, count_events, daemon_until_acked, servers
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

from liberator.connectors.mysql_binlog import MySQLBinlogSource
from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.mysql_binlog.position import BinlogPosition, Coord, MariaDBGtidPos
from liberator.offsets.base import StoredOffset
from liberator.offsets.file import FileOffsetStore
from liberator.source import SourceContext

SOURCE = "bench"
APP = "bench"


def binlog_point(db: Any) -> BinlogPosition:
    """Where the binlog ends now, with the GTID state there (MariaDB) so the source may resume by GTID."""
    row = db.execute("SHOW MASTER STATUS")[0]
    coord = Coord(str(row[0]), int(row[1]))
    if db.is_mariadb:
        gtid = db.execute("SELECT BINLOG_GTID_POS(%s, %s)", (coord.file, coord.pos))[0][0]
        return BinlogPosition(coord, MariaDBGtidPos.parse(str(gtid or "")))
    return BinlogPosition(coord, None)  # MySQL: resume by file/position (the bench server has no GTIDs)


def load(db: Any, rows: int, tx_rows: int) -> None:
    for start in range(1, rows + 1, tx_rows):
        end = min(start + tx_rows - 1, rows)
        db.execute(
            "INSERT INTO orders SELECT seq, CONCAT('customer-', seq % 1000), (seq % 100000) / 100.0, seq % 50 + 1,"
            " IF(seq % 10 = 0, NULL, CONCAT('note ', seq)),"
            " TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 1000 MICROSECOND"
            f" FROM seq_{start}_to_{end}",
            database="bench",
        )


def bare_reader(db: Any, start: BinlogPosition, rows: int) -> int:
    """BinLogStreamReader from the same point, decoding every row of the WriteRowsEvents: the library alone."""
    reader = BinLogStreamReader(
        connection_settings=db.connection_settings(),
        server_id=90001,
        blocking=True,
        resume_stream=True,
        log_file=start.coord.file,
        log_pos=start.coord.pos,
        only_events=[WriteRowsEvent],
        only_tables=["orders"],
        enable_logging=False,
    )
    count = 0
    try:
        for event in reader:
            for row in event.rows:
                count += row["values"]["id"] > 0
            if count >= rows:
                break
    finally:
        reader.close()
    return count


def source_config(db: Any) -> MySQLBinlogConfig:
    return MySQLBinlogConfig(
        name=SOURCE, url=db.url(driver=None), tables=["bench.orders"], server_id=90002, snapshot="never"
    )


def source_alone(db: Any, start: BinlogPosition, rows: int) -> int:
    stop = threading.Event()
    source = MySQLBinlogSource(source_config(db), SourceContext(APP, stop, logging.getLogger("bench")))
    return count_events(source, start, rows, stop)


def write_config(workdir: Path, db: Any, start: BinlogPosition, bootstrap: str, registry: str) -> Path:
    q = json.dumps
    offsets = workdir / "offsets.json"
    FileOffsetStore(offsets, APP).save(StoredOffset.now(SOURCE, "mysql_binlog", start.to_json()))
    path = workdir / "liberator.yaml"
    path.write_text(
        f"name: {APP}\nkafka:\n  bootstrap_servers: {q(bootstrap)}\nschema_registry:\n  url: {q(registry)}\n"
        f"offsets:\n  store: file\n  path: {q(str(offsets))}\n  flush_interval: 200ms\n"
        f"sources:\n  - name: {SOURCE}\n    type: mysql_binlog\n    url: {q(db.url(driver=None))}\n"
        "    tables: [bench.orders]\n    server_id: 90003\n    snapshot: never\n"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="inserted rows (= change events)")
    parser.add_argument("--tx-rows", type=int, default=1000, help="rows per transaction")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    table = ResultTable()
    with servers("mariadb") as (db, bootstrap, registry), tempfile.TemporaryDirectory() as tmp:
        db.create_database("bench")
        db.execute(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer VARCHAR(50) NOT NULL, total DECIMAL(10, 2),"
            " qty INTEGER NOT NULL, note TEXT, updated_at DATETIME(6) NOT NULL)",
            database="bench",
        )
        start = binlog_point(db)
        print(f"writing {args.rows} rows in transactions of {args.tx_rows} (binlog from {start.describe()})...")
        t0 = time.perf_counter()
        load(db, args.rows, args.tx_rows)
        print(f"  written in {time.perf_counter() - t0:.1f}s", flush=True)

        reference = "bare BinLogStreamReader iteration (decode rows)"
        t0 = time.perf_counter()
        table.add(reference, bare_reader(db, start, args.rows), time.perf_counter() - t0)
        t0 = time.perf_counter()
        alone = source_alone(db, start, args.rows)
        table.add("source alone (binlog -> events, no Avro/Kafka)", alone, time.perf_counter() - t0)
        seconds = daemon_until_acked(write_config(Path(tmp), db, start, bootstrap, registry), args.rows)
        table.add("daemon, start -> all acked by Kafka (binlog->Avro->Kafka)", args.rows, seconds)
    table.print(reference)


if __name__ == "__main__":
    main()
