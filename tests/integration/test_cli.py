"""The operator's commands: check, schemas, offsets, tail, and the /health endpoint, as processes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.integration.legacy_db import LegacyDb
from tests.support import DaemonThread, app_config, read_topic, wait_for
from tests.support import cli as liberator


@pytest.fixture
def legacy(pg_url: str) -> LegacyDb:
    db = LegacyDb(pg_url, "postgresql")
    db.create_orders()
    for i in range(1, 4):
        db.insert_order(i, total=f"{i}.10")
    return db


def source_yaml(legacy: LegacyDb, url: str | None = None) -> str:
    return (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {url or legacy.url}\n'
        "    tables: [public.orders]\n    cursor: [updated_at, id]\n    poll_interval: 100ms\n"
        "    safety_delay: 100ms\n"
    )


def test_check_passes_on_a_good_config(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    result = liberator("check", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: Kafka at" in result.stdout and "ok: source legacy (query)" in result.stdout


def test_check_lists_one_line_problems(legacy: LegacyDb, tmp_path: Path, postgres_server: object) -> None:
    postgres_server.create_user("checker", "right")  # type: ignore[attr-defined]
    bad_url = legacy.url.replace("postgres@", "checker:wrong@", 1)
    assert "checker:wrong@" in bad_url
    config = app_config(tmp_path, "127.0.0.1:1", "http://127.0.0.1:9", source_yaml(legacy, bad_url))
    result = liberator("check", str(config))
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 3, result.stdout
    assert "Kafka at 127.0.0.1:1 did not answer" in problems[0]
    assert "schema registry" in problems[1] and "127.0.0.1:9" in problems[1]
    assert "refused the credentials" in problems[2] and "wrong" not in problems[2]


def test_check_reports_a_config_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nkafka:\n  bootstrap_servers: b\nschema_registry: {url: u}\nsources:\n  - type: query\n")
    result = liberator("check", str(path))
    assert result.returncode == 1
    assert result.stdout.startswith(f"problem: {path}:6: sources[0].name: is required but missing")


def test_check_lists_every_problem_of_the_file_then_checks_what_is_valid(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    bad_sources = (
        "  - name: typo\n    type: query\n    url: sqlite:///x.db\n    tables: [t]\n    cursr: [id]\n"
        "  - name: tapped\n    type: tap\n"
        "  - name: slow\n    type: query\n    url: sqlite:///x.db\n    tables: [t]\n    cursor: [id]\n"
        "    poll_interval: soon\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, bad_sources + source_yaml(legacy))
    result = liberator("check", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    output = [line for line in result.stdout.splitlines() if line.strip()]
    problems = [line for line in output if line.startswith("problem: ")]
    assert [p.split(": ")[2] for p in problems] == ["sources[0].cursr", "sources[1].type", "sources[2].poll_interval"]
    assert "did you mean 'cursor'?" in problems[0] and "unknown type 'tap'" in problems[1] and "soon" in problems[2]
    assert output[: len(problems)] == problems  # the file's problems first, then connectivity
    assert "ok: source legacy (query): reachable, tables readable" in output and any("ok: Kafka" in o for o in output)
    assert all(line.startswith(("ok: ", "problem: ")) for line in output) and result.stderr == "", result.stderr


def test_run_with_a_bad_config_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nkafka: {bootstrap_servers: b}\nschema_registry: {url: u}\nsources: [{type: tap}]\n")
    result = liberator("run", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "unknown type 'tap'" in result.stderr


def test_schemas_prints_exact_avro_types(legacy: LegacyDb, tmp_path: Path) -> None:
    config = app_config(tmp_path, "127.0.0.1:1", "http://127.0.0.1:9", source_yaml(legacy))
    result = liberator("schemas", str(config))
    assert result.returncode == 0, result.stderr
    (stream,) = json.loads(result.stdout)
    value = stream["subjects"][f"{legacy.prefix}.orders-value"]
    fields = {f["name"]: f["type"] for f in value["fields"]}
    assert fields["id"] == "int"
    assert fields["total"][1] == {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
    assert fields["updated_at"]["logicalType"] == "timestamp-micros"
    key = stream["subjects"][f"{legacy.prefix}.orders-key"]
    assert [f["name"] for f in key["fields"]] == ["id"]


def test_offsets_show_and_reset(legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str) -> None:
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", expect=3)
        wait_for(lambda: daemon.status("legacy").positions_stored > 0, what="a stored position")
    shown = json.loads(liberator("offsets", "show", str(config)).stdout)
    assert shown["legacy"]["position"]["streams"]["public.orders"]["cursor"][1] == 3
    reset = liberator("offsets", "reset", str(config), "--source", "legacy")
    assert reset.returncode == 0 and "reset legacy" in reset.stdout
    assert json.loads(liberator("offsets", "show", str(config)).stdout) == {}
    unknown = liberator("offsets", "reset", str(config), "--source", "nope")
    assert unknown.returncode == 1 and "no source named 'nope'" in unknown.stderr


def test_tail_prints_json_lines(legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str) -> None:
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", expect=3)
    result = liberator(
        "tail",
        f"{legacy.prefix}.orders",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--registry",
        registry_url,
        "--from-beginning",
        "--max",
        "3",
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["key"] for line in lines] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert lines[1]["value"]["total"] == "2.10"  # decimals as exact strings
    assert lines[0]["timestamp"].endswith("+00:00") and lines[0]["partition"] == 0 and lines[0]["offset"] == 0


def test_kafka_offset_store_resumes_without_duplicates(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    offsets = f"offsets:\n  store: kafka\n  topic: {legacy.prefix}-offsets\n  flush_interval: 200ms\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy), offsets=offsets)
    topic = f"{legacy.prefix}.orders"
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, topic, expect=3)
        wait_for(lambda: daemon.status("legacy").positions_stored > 0, what="a stored position")
    legacy.insert_order(4)
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, topic, expect=4)
    assert [r["key"]["id"] for r in read_topic(kafka_bootstrap, registry_url, topic)] == [1, 2, 3, 4]
    shown = json.loads(liberator("offsets", "show", str(config)).stdout)
    assert shown["legacy"]["position"]["streams"]["public.orders"]["cursor"][1] == 4


def test_health_and_metrics_endpoints(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    from liberator.embedded.ports import free_port

    port = free_port()
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    config.write_text(config.read_text().replace("sources:\n", f"http:\n  listen: 127.0.0.1:{port}\nsources:\n"))
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", expect=3)
        wait_for(
            lambda: (
                json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/health"))["sources"]["legacy"][
                    "events_acked"
                ]
                == 3
            ),
            what="health to count the events",
        )
        health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/health"))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    assert health["status"] == "ok" and health["sources"]["legacy"]["state"] == "running"
    assert 'liberator_events_acked_total{app="test",source="legacy",type="query"} 3' in metrics


def test_registry_serve_command(tmp_path: Path) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    from liberator.embedded.ports import free_port

    port = free_port()
    data = tmp_path / "registry.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "liberator", "registry", "serve", "--port", str(port), "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        # Connection refused means "not listening yet"; any other answer than 200 fails at once.
        wait_for(lambda: urllib.request.urlopen(f"{url}/subjects", timeout=5).status == 200, what="the registry")
        client = SchemaRegistryClient({"url": url})
        schema_id = client.register_schema("t-value", Schema('{"type":"record","name":"R","fields":[]}', "AVRO"))
        assert client.get_schema(schema_id).schema_str is not None
    finally:
        process.terminate()
        assert process.wait(10) == 0
    assert data.exists()
