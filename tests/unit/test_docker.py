"""docker/: what can be checked without a Docker engine.

The compose file parses and holds together (services, depends_on, volumes, the Kafka KRaft
settings), both workers run the same config with their own web host and port, the
Dockerfile's ENTRYPOINT/CMD are a command line that Faust's worker accepts (run here with
``--help``), the healthcheck one-liners work against real servers, ``docker/config.yaml``
passes ``load_config`` and points at the compose services, and ``.dockerignore`` keeps
the virtualenv and local state out of the build context while keeping what
``pip install .`` needs.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from aiohttp import web

from app.broker import free_port
from app.config import load_config
from app.emarsys.simulator import add_arguments, serve
from app.topics import bootstrap_servers

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
CONFIG_FILE = DOCKER / "config.yaml"
DOCKERIGNORE = REPO / ".dockerignore"

_COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


# -- helpers -----------------------------------------------------------------------------


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` interpolation (enough for this file)."""
    if isinstance(value, str):
        return _COMPOSE_VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def workers() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if (s.get("command") or [None])[0] == "worker"}


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in an argv list."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def replace_option(argv: list[str], name: str, value: str) -> list[str]:
    out = list(argv)
    i = out.index(name)
    out[i + 1] = value
    return out


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: {} for d in deps}
    return {k: (v or {}) for k, v in deps.items()}


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each volume, short or long syntax."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
            out.append((parts[0], parts[1], ro))
        else:
            out.append((v["source"], v["target"], bool(v.get("read_only"))))
    return out


def published_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) of each published port."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            out.append((int(p["published"]), int(p["target"])))
            continue
        parts = str(p).split("/")[0].split(":")
        out.append((int(parts[-2]), int(parts[-1])))
    return out


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        buf += line
        instruction, _, rest = buf.partition(" ")
        out.append((instruction.upper(), rest.strip()))
        buf = ""
    assert not buf, "the Dockerfile ends inside a line continuation"
    return out


def dockerfile_args(instruction: str) -> list[str]:
    return [rest for instr, rest in dockerfile_instructions() if instr == instruction]


def exec_form(instruction: str) -> list[str]:
    """The last ENTRYPOINT/CMD, which must use the JSON (exec) form."""
    values = dockerfile_args(instruction)
    assert values, f"no {instruction} in the Dockerfile"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
    return parsed


def healthcheck_command() -> list[str]:
    (hc,) = dockerfile_args("HEALTHCHECK")
    options, _, command = hc.partition("CMD ")
    assert options.split() and all(o.startswith("--") for o in options.split())
    return json.loads(command)


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Whether ``rel`` (or a folder above it) matches a .dockerignore pattern."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        assert not pattern.startswith("!"), "exceptions are not handled by this helper"
        pat = pattern.strip("/")
        if pat.startswith("**/"):
            tail = pat[3:]
            if any(fnmatch.fnmatchcase(p, tail) for p in parts):
                return True
        elif any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            return True
    return False


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMD_", "DEMO_"))}
    env.update(extra)
    return env


def faust_help(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``emarsys-destination ARGV --help``: Faust parses every option, then prints help."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *argv, "--help"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- compose: structure ------------------------------------------------------------------


def test_compose_parses_and_dependencies_exist():
    compose = load_compose()
    names = set(compose["services"])
    assert {"kafka", "simulator", "worker1", "worker2"} <= names
    for name, service in compose["services"].items():
        for dep in depends_on(service):
            assert dep in names, f"{name} depends on unknown service {dep}"
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _target, _ro in mounts(service):
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: named volume {source} is not declared"


def test_images_are_built_from_the_repository():
    for name, service in services().items():
        if name == "kafka":
            continue
        build = service.get("build")
        assert isinstance(build, dict), f"{name} must build the image"
        context = (DOCKER / build["context"]).resolve()
        assert context == REPO
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    images = {s.get("image") for n, s in services().items() if n != "kafka"}
    assert len(images) == 1 and None not in images


def test_kafka_is_a_single_kraft_node_without_auto_created_topics():
    kafka = services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])

    listeners = dict(
        (name, hostport)
        for name, _, hostport in (x.partition("://") for x in env["KAFKA_LISTENERS"].split(","))
    )
    protocols = dict(x.split(":") for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    advertised = dict(
        (name, hostport)
        for name, _, hostport in (
            x.partition("://") for x in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
        )
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(listeners) <= set(protocols)
    assert controller in listeners and controller not in advertised
    assert set(advertised) <= set(listeners)
    assert env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT") in advertised

    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    voter_host, _, voter_port = voter.partition(":")
    assert voter_host in ("kafka", kafka.get("hostname"))
    assert voter_port == listeners[controller].rpartition(":")[2]

    # The workers' broker URL is one of the advertised listeners.
    config = load_config(CONFIG_FILE, env={})
    for hostport in bootstrap_servers(config.broker).split(","):
        assert hostport in advertised.values()

    log_dir = env["KAFKA_LOG_DIRS"]
    assert any(t == log_dir for _s, t, _ro in mounts(kafka)), "Kafka's data must be on a volume"
    test = " ".join(kafka["healthcheck"]["test"])
    assert "kafka-broker-api-versions.sh" in test
    assert "localhost:9092" in test or "kafka:9092" in test


# -- compose: workers --------------------------------------------------------------------


def test_two_workers_share_one_config_with_their_own_host_port_and_state():
    ws = workers()
    assert set(ws) == {"worker1", "worker2"}
    config_sources, hosts, host_ports, data_volumes, tokens = set(), set(), set(), set(), set()
    for name, w in ws.items():
        cmd = w["command"]
        config_path = option(cmd, "--config")
        datadir = option(cmd, "--datadir")
        web_port = option(cmd, "--web-port")
        assert config_path and datadir and web_port
        assert option(cmd, "--web-host") == name, "--web-host must be the service name"
        hosts.add(option(cmd, "--web-host"))
        assert option(cmd, "--web-bind") == "0.0.0.0"

        (config_mount,) = [m for m in mounts(w) if m[1] == config_path]
        assert config_mount[2], f"{name}: the config must be mounted read-only"
        source = (DOCKER / config_mount[0]).resolve()
        assert source == CONFIG_FILE
        config_sources.add(source)

        (data_mount,) = [m for m in mounts(w) if m[1] == datadir]
        assert data_mount[0] in load_compose()["volumes"], f"{name}: datadir on a named volume"
        data_volumes.add(data_mount[0])

        ports = published_ports(w)
        assert [c for _h, c in ports] == [int(web_port)]
        host_ports.add(ports[0][0])

        assert depends_on(w)["kafka"].get("condition") == "service_healthy"
        token = w["environment"]["EMD_ADMIN_TOKEN"]
        assert re.fullmatch(r"\$\{EMD_ADMIN_TOKEN:-[^}]+\}", token), token
        tokens.add(token)
    assert len(config_sources) == 1
    assert len(hosts) == len(host_ports) == len(data_volumes) == 2
    assert host_ports == {6066, 6067}
    assert len(tokens) == 1, "forwarded requests need one admin token for every worker"


def test_every_config_variable_has_a_default_and_reaches_the_workers():
    def strings(node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return []

    values = strings(yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8")))
    refs = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}", " ".join(values))
    assert refs
    for name, default in refs:
        assert default, f"${{{name}}} needs a default so `compose up` works as is"
        for wname, w in workers().items():
            assert name in w["environment"], f"{wname} does not pass {name}"


@pytest.mark.parametrize("name", ["worker1", "worker2"])
def test_worker_command_is_accepted_by_faust(name, tmp_path):
    w = services()[name]
    cmd = w["command"]
    config_path = option(cmd, "--config")
    (config_mount,) = [m for m in mounts(w) if m[1] == config_path]
    argv = replace_option(cmd, "--config", str((DOCKER / config_mount[0]).resolve()))
    argv = replace_option(argv, "--datadir", str(tmp_path / "data"))
    result = faust_help(argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Start worker instance" in result.stdout
    assert not (tmp_path / "data").exists()


def test_an_unknown_worker_option_is_refused(tmp_path):
    """The check above would catch a bad flag: Faust refuses unknown options before --help."""
    result = faust_help(["worker", "--config", str(CONFIG_FILE), "--no-such-option", "1"])
    assert result.returncode != 0
    assert "No such option" in result.stderr


def test_simulator_service_is_reachable_with_the_workers_credentials(monkeypatch):
    sim = services()["simulator"]
    command = interpolate(sim["command"], {})
    assert command[0] == "emarsys-simulator"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(command[1:])
    assert ns.host == "0.0.0.0", "the simulator must listen beyond the container's loopback"
    assert (ns.port, ns.port) in published_ports(sim)

    # The CLI passes --host and --port through to the simulator.
    import app.cli
    import app.emarsys.simulator as simulator_module

    seen: dict[str, Any] = {}

    def fake_run(port: int, options: Any, host: str = "127.0.0.1") -> None:
        seen.update(port=port, host=host, options=options)

    monkeypatch.setattr(simulator_module, "run", fake_run)
    assert app.cli.main(list(command)) == 0
    assert seen["host"] == "0.0.0.0" and seen["port"] == ns.port

    config = load_config(CONFIG_FILE, env={})
    for account in config.accounts.values():
        for url in (account.emarsys.api_url, account.emarsys.token_url):
            parts = urlsplit(url)
            assert (parts.hostname, parts.port) == ("simulator", ns.port)
        creds = account.emarsys
        assert seen["options"].oauth_clients.get(creds.client_id) == creds.client_secret


# -- docker/config.yaml ------------------------------------------------------------------


def test_config_loads_and_points_at_the_compose_services():
    config = load_config(CONFIG_FILE, env={})
    assert config.broker == "kafka://kafka:9092"
    assert config.replication_factor == 1
    (account,) = config.accounts.values()
    assert account.emarsys.api_url == "http://simulator:9797/api/v3"
    assert account.emarsys.token_url == "http://simulator:9797/oauth2/token"
    assert account.api_keys == ["demo-key"]
    hosts = {h.partition(":")[0] for h in bootstrap_servers(config.broker).split(",")}
    assert hosts <= set(services())

    text = CONFIG_FILE.read_text(encoding="utf-8")
    assert "https://api.emarsys.net/api/v3" in text
    assert "https://auth.emarsys.net/oauth2/token" in text


def test_config_takes_secrets_from_the_environment():
    env = {
        "DEMO_API_KEY": "segment-key",
        "DEMO_EMARSYS_CLIENT_ID": "real-client",
        "DEMO_EMARSYS_CLIENT_SECRET": "real-secret",
    }
    config = load_config(CONFIG_FILE, env=env)
    (account,) = config.accounts.values()
    assert account.api_keys == ["segment-key"]
    assert account.emarsys.client_id == "real-client"
    assert account.emarsys.client_secret == "real-secret"


# -- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_base_user_ports_and_volume():
    instructions = dockerfile_instructions()
    arg_defaults = dict(a.split("=", 1) for a in dockerfile_args("ARG") if "=" in a)
    froms = [rest.split()[0] for instr, rest in instructions if instr == "FROM"]
    assert froms
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], image)
        assert image.startswith("python:3.11-slim"), image

    runs = " ".join(dockerfile_args("RUN"))
    assert re.search(r"pip install (--[\w-]+ )*\.(\s|$)", runs), "the image must `pip install .`"

    users = dockerfile_args("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")

    cmd = exec_form("CMD")
    assert option(cmd, "--datadir") in " ".join(dockerfile_args("VOLUME"))
    assert option(cmd, "--web-port") in dockerfile_args("EXPOSE")


def test_dockerfile_copies_only_what_exists_and_is_in_the_context():
    patterns = dockerignore_patterns()
    for args in dockerfile_args("COPY"):
        if "--from=" in args:
            continue
        words = [w for w in args.split() if not w.startswith("--")]
        for source in words[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    copied = " ".join(dockerfile_args("COPY"))
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied, f"package {package} is not copied"
    assert pyproject["project"]["readme"] in copied


def test_entrypoint_is_the_console_script():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert exec_form("ENTRYPOINT") == ["emarsys-destination"]
    assert pyproject["project"]["scripts"]["emarsys-destination"] == "app.cli:main"


def test_dockerfile_cmd_is_accepted_by_faust(tmp_path):
    cmd = exec_form("CMD")
    assert cmd[0] == "worker"
    assert option(cmd, "--config") == "/etc/emd/config.yaml"
    # The compose workers mount docker/config.yaml there and keep the same options.
    for w in workers().values():
        assert option(w["command"], "--config") == option(cmd, "--config")
        assert option(w["command"], "--datadir") == option(cmd, "--datadir")
        assert option(w["command"], "--web-port") == option(cmd, "--web-port")
    argv = replace_option(cmd, "--config", str(CONFIG_FILE))
    argv = replace_option(argv, "--datadir", str(tmp_path / "data"))
    result = faust_help(argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Start worker instance" in result.stdout


async def _run_python(code: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), timeout=30)


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
async def test_worker_healthcheck_follows_the_health_status(status, healthy):
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "no curl in the slim image"
    code = command[2]
    port = option(exec_form("CMD"), "--web-port")
    assert f"127.0.0.1:{port}/health" in code

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "x"}, status=status)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    test_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", test_port).start()
    try:
        rc = await _run_python(code.replace(f":{port}/", f":{test_port}/"))
    finally:
        await runner.cleanup()
    assert (rc == 0) is healthy


async def test_simulator_healthcheck_passes_against_the_simulator():
    sim = services()["simulator"]
    test = sim["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1:3] == ["python", "-c"]
    port = option(interpolate(sim["command"], {}), "--port")
    code = test[3]
    assert f":{port}/" in code
    runner = await serve("127.0.0.1", 0)
    try:
        actual = runner.addresses[0][1]
        rc = await _run_python(code.replace(f":{port}/", f":{actual}/"))
    finally:
        await runner.cleanup()
    assert rc == 0


# -- .dockerignore -----------------------------------------------------------------------


def test_dockerignore_keeps_local_state_out_and_the_sources_in():
    patterns = dockerignore_patterns()
    for path in (
        ".venv",
        ".venv/bin/python",
        ".git",
        ".git/HEAD",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        "app/__pycache__/cli.cpython-311.pyc",
        "emarsys-destination-data",
        "emarsys_destination.egg-info",
    ):
        assert ignored(path, patterns), f"{path} should be excluded from the build context"
    for path in (
        "pyproject.toml",
        "README.md",
        "app/cli.py",
        "app/web/static",
        "agents/person.py",
        "tables/__init__.py",
        "docker/Dockerfile",
    ):
        assert not ignored(path, patterns), f"{path} is needed in the build context"


# -- the real tool, when present ---------------------------------------------------------


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_when_available():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("docker compose is not installed")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
