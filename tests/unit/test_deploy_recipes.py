"""The deploy recipes (Dockerfile, systemd unit, Kubernetes sidecar, kustomize base) agree with the CLI and the
http config: the command they run parses as `liberator run CONFIG`, CONFIG is where they mount it, the config
validates, its http.listen port is the one their probes call on /health/live and /health/ready, and the
secrets it reads with ${file:...} are files they mount. No Docker engine here: the Dockerfile is read, not built.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from liberator.cli import build_parser, cmd_run
from liberator.config import AppConfig, load_config
from liberator.health import LIVE_PATH, READY_PATH

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
_SECRET_FILE = re.compile(r"\$\{file:([^}]+)\}")


def run_args(argv: list[str]) -> str:
    """The config path of a command line that must be `liberator run CONFIG`."""
    args = build_parser().parse_args(argv)
    assert args.func is cmd_run, argv
    return str(args.config)


def validated(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> AppConfig:
    """The config as the daemon would load it, its secret files stood in for by files under tmp_path."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for secret in _SECRET_FILE.findall(text):
        stand_in = tmp_path / secret.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("pw\n")
        text = text.replace(f"${{file:{secret}}}", f"${{file:{stand_in}}}")
    path = tmp_path / "liberator.yaml"
    path.write_text(text)
    return load_config(path)


def http_port(config: AppConfig) -> int:
    assert config.http is not None, "the probes need http: in the config"
    return int(config.http.listen.rpartition(":")[2])


# -- Dockerfile ---------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_dockerfile_runs_the_mounted_config_as_non_root_with_a_live_healthcheck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instructions = dockerfile()
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    values: dict[str, list[str]] = {}
    for op, value in final:
        values.setdefault(op, []).append(value)
    assert all("-slim" in value for op, value in instructions if op == "FROM")
    [user] = values["USER"]
    assert user.split(":")[0] not in ("root", "0")
    entrypoint, command = json.loads(values["ENTRYPOINT"][-1]), json.loads(values["CMD"][-1])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["liberator"] and "liberator" in scripts
    config_path = run_args(command)
    volumes = json.loads(values["VOLUME"][0])
    assert str(Path(config_path).parent) in volumes

    text = (DEPLOY / "liberator.yaml").read_text()
    config = validated(text, tmp_path, monkeypatch, {})
    assert config.http is not None and config.http.listen.startswith("0.0.0.0:")  # reachable from outside
    port = http_port(config)
    assert values["EXPOSE"] == [str(port)]
    [healthcheck] = values["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}{LIVE_PATH}'" in healthcheck and READY_PATH not in healthcheck
    assert {str(Path(secret).parent) for secret in _SECRET_FILE.findall(text)} <= set(volumes)
    # What the image installs is what the wheel packages.
    copied = {value.split()[0] for op, value in instructions if op == "COPY" and "--from" not in value}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {name.split(".")[0].rstrip("*") for name in packages["include"]} <= copied and "pyproject.toml" in copied


# -- systemd --------------------------------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(DEPLOY / "systemd" / "liberator.service")
    return parser


def test_the_systemd_unit_restarts_on_failure_hardened_with_the_password_as_a_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    for option in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables"):
        assert service[option] == "yes", option
    assert service["ProtectSystem"] == "strict" and service["DynamicUser"] == "yes"
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/bin/liberator")
    assert run_args(command[1:]) == "/etc/liberator/liberator.yaml"
    text = (DEPLOY / "systemd" / "liberator.yaml").read_text()
    config = validated(text, tmp_path, monkeypatch, {})
    credential = service["LoadCredential"].split(":")[0]
    assert _SECRET_FILE.findall(text) == [f"/run/credentials/liberator.service/{credential}"]
    assert config.offsets.path is not None and config.offsets.path.startswith(f"/var/lib/{service['StateDirectory']}/")
    assert float(service["TimeoutStopSec"]) > config.shutdown_timeout  # positions are stored before the kill


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    executable = Path(sys.executable).parent / "liberator"  # the venv's, whether or not it is on PATH
    if not executable.is_file():
        pytest.skip("no installed liberator executable to stand in for /opt/liberator/bin/liberator")
    text = (DEPLOY / "systemd" / "liberator.service").read_text()
    (tmp_path / "liberator.service").write_text(text.replace("/opt/liberator/bin/liberator", str(executable)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "liberator.service")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


# -- Kubernetes -----------------------------------------------------------------------------------------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The manifests `kubectl apply -k` would apply: rendered by kubectl where it is installed, else read
    from the kustomization (its resources and its configMapGenerator files; patches are not applied)."""
    if shutil.which("kubectl") is not None:
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=True
        )
        return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs = [doc for name in spec["resources"] for doc in yaml.safe_load_all((directory / name).read_text()) if doc]
    for generated in spec.get("configMapGenerator", []):
        data = {name: (directory / name).read_text() for name in generated["files"]}
        docs.append({"kind": "ConfigMap", "metadata": {"name": generated["name"]}, "data": data})
    return docs


def check_liberator_pod(
    docs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], AppConfig]:
    """The Deployment running liberator, after checking its container against the CLI and its config."""
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = [c for c in pod["containers"] if c["name"] == "liberator"]
    config_path = Path(run_args(container["args"]))
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volume = volumes[mounts[str(config_path.parent)]]
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    text = config_maps[config_volume["configMap"]["name"]]["data"][config_path.name]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    config = validated(text, tmp_path, monkeypatch, env)
    port = http_port(config)
    assert config.http is not None and config.http.listen.startswith("0.0.0.0:")
    ports = {p.get("name", p["containerPort"]): p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", LIVE_PATH), ("readinessProbe", READY_PATH), ("startupProbe", LIVE_PATH)):
        get = container[probe]["httpGet"]
        assert get["path"] == path and ports.get(get["port"], get["port"]) == port, (probe, get)
    secrets = _SECRET_FILE.findall(text)
    assert secrets, "the example reads its password from a mounted secret file"
    for secret in secrets:
        assert "secret" in volumes[mounts[str(Path(secret).parent)]], secret
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert context["runAsNonRoot"] is True and context.get("runAsUser") != 0
    assert pod["terminationGracePeriodSeconds"] > config.shutdown_timeout
    return deployment, config


def test_the_sidecar_runs_beside_the_legacy_app_with_liberators_probes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "sidecar" / "legacy-app.yaml").read_text()) if d]
    deployment, config = check_liberator_pod(docs, tmp_path, monkeypatch)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 2  # the application and liberator in one pod
    assert all("@127.0.0.1:" in str(source.url) for source in config.sources)  # the app's database, over localhost


def test_the_kustomize_base_runs_two_replicas_and_its_service_serves_the_http_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = kustomize(DEPLOY / "kubernetes" / "base")
    deployment, config = check_liberator_pod(docs, tmp_path, monkeypatch)
    assert deployment["spec"]["replicas"] == 2
    # Two replicas are a hot standby only with the lease, and one offsets store both read (docs/ha.md).
    assert config.ha.mode == "lease" and config.offsets.store == "kafka"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0  # never an extra leader candidate
    [service] = [d for d in docs if d["kind"] == "Service"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    names = {p["name"]: p["containerPort"] for p in container["ports"]}
    [port] = service["spec"]["ports"]
    assert names[port["targetPort"]] == http_port(config)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    if shutil.which("kubectl") is not None:
        [single] = [d for d in kustomize(DEPLOY / "kubernetes" / "single") if d["kind"] == "Deployment"]
        assert single["spec"]["replicas"] == 1


def test_the_readme_points_at_every_recipe() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme[readme.index("\n## Deploy") :]
    for recipe in (
        "Dockerfile",
        "deploy/systemd/liberator.service",
        "deploy/kubernetes/sidecar",
        "deploy/kubernetes/base",
    ):
        assert recipe in deploy, recipe
        assert (ROOT / recipe).exists(), recipe
