"""Two daemons with one config on one database and `ha.mode: off` (no lease, docs/ha.md): the second stops with one
line naming who holds the slot / server_id, and the first keeps streaming undisturbed. With the lease (the
default) the second stands by instead: tests/e2e/test_hot_standby.py."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cdc_targets import Target, _cdc_target  # noqa: F401 - _cdc_target: the fixture
from tests.support import TopicFold, app_config, start_daemon_process, terminate, wait_for


def test_a_second_daemon_names_the_first_and_leaves_it_streaming(
    cdc_target: Target, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    target = cdc_target
    target.fill(100)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, target.source)
    config.write_text(config.read_text() + "ha:\n  mode: off\n")  # bare `off`: YAML's false, read as "off"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_daemon_process(config, first_log)
    try:
        with TopicFold(kafka_bootstrap, registry_url, target.topic, "v") as fold:
            wait_for(lambda: fold.rows() == target.table(), what="the first daemon to publish the table")
            target.transaction([("UPDATE acc SET v = v + 1 WHERE id = 1", ())])
            wait_for(lambda: fold.rows() == target.table(), what="the first daemon to stream")

            second = start_daemon_process(config, second_log)
            try:
                assert second.wait(60) == 1, second_log.read_text()[-3000:]
            finally:
                if second.poll() is None:
                    second.kill()
                    second.wait(10)
            text = second_log.read_text()
            if target.slot:
                line = f"replication slot {target.slot} is in use by another daemon (walsender pid "
                assert line in text and "application_name 'liberator pid " in text, text[-3000:]
                assert "past the stored position" not in text
            else:
                assert "is in use on this server: another daemon holds it (user " in text, text[-3000:]
                assert "4052" not in text
            assert "Traceback" not in text

            # The first daemon never noticed: it still streams every change.
            changes = [("UPDATE acc SET v = v + 1 WHERE id <= 5", ()), ("INSERT INTO acc VALUES (500, 9)", ())]
            target.transaction(changes)
            wait_for(lambda: fold.rows() == target.table(), what="the first daemon to go on streaming")
    finally:
        assert terminate(first) == 0, first_log.read_text()[-3000:]
    troubles = [
        line
        for line in first_log.read_text().splitlines()
        if (" ERROR " in line or " WARNING " in line) and "REPLICA IDENTITY" not in line
    ]
    assert not troubles
