"""The container image and compose.yaml, checked without a Docker engine.

The Dockerfile is read with BuildKit's parser and held to the rules of a
production image; its build context is computed as `docker build` computes it
from .dockerignore; then its build and run steps are carried out for real
(tests/image.py): the builder's virtual environment, the runtime stage made
from it, and the CMD started as the image's user with compose.yaml's
environment, answering its own HEALTHCHECK. compose.yaml is read, held to the
README and the Dockerfile, its proxy configuration read by Caddy itself, and
the whole file checked by docker-compose when it is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from cluster import HOST, dotenv, service_command, service_environment
from image import BASE_PYTHON, ROOT, Build, context_files, copy_context, ignore_patterns, stages
from mailserver import free_port
from pgserver import BIN as PG_BIN
from pgserver import stoppable_cluster

from oidc_provider.config import SETTINGS

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
SETTING_NAMES = {s.name for s in SETTINGS}
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "PORTAL_SITE", "HTTP_PORT", "HTTPS_PORT", "MAILPIT_PORT"}
IMAGE_USER = 10001
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY\b")


def dotenv_example() -> dict[str, str]:
    return dotenv(ROOT / ".env.example")


# -- the Dockerfile's rules --------------------------------------------------------------


def test_the_image_is_built_in_two_stages_and_runs_the_production_server_as_a_user():
    builder, runtime = stages()
    assert builder.name == "builder" and runtime.base.endswith("-slim-bookworm")
    assert builder.base == runtime.base  # the venv's interpreter is the runtime's own
    assert any("pip install" in c.value[0] for c in builder.all("RUN"))
    assert not [
        c for c in runtime.all("RUN") if re.search(r"pip install|apt-get|gcc|build-essential", c.value[0])
    ]
    assert all(c.flags == ("--from=builder",) for c in runtime.all("COPY") if c.value[0].startswith("/"))

    user = runtime.last("USER").value[0]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == IMAGE_USER and int(gid) != 0  # numeric: runAsNonRoot can check it

    env = runtime.env()
    assert env["LOG_FORMAT"] == "json" and env["WEB_HOST"] == "0.0.0.0"
    assert runtime.last("EXPOSE").value == (env["WEB_PORT"],)
    assert runtime.last("CMD").json and runtime.last("CMD").value == (
        "flask",
        "--app",
        "oidc_provider",
        "serve",
    )
    healthcheck = runtime.last("HEALTHCHECK")
    assert healthcheck.value[0] == "CMD" and "/health/live" in " ".join(healthcheck.value)
    assert "WEB_PORT" in " ".join(healthcheck.value)  # follows the port the server listens on
    flags = dict(f.lstrip("-").split("=", 1) for f in healthcheck.flags)
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)

    for stage in (builder, runtime):  # no secret is baked in
        for name, value in stage.env().items():
            assert not (SECRET_NAMES.search(name) and value), name
        assert not stage.all("ARG")


def test_the_build_context_holds_the_source_and_no_local_state_or_secret(tmp_path):
    """A checkout as a developer's is: a virtualenv, instance/ with its secret
    key and SQLite database, exported keys, outboxes, test artifacts, an .env."""
    checkout = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    planted = [
        ".venv/bin/python",
        "instance/secret_key",
        "instance/portal.sqlite3",
        "instance/outbox/1.eml",
        "outbox/2.eml",
        "keys/RS256-abc.json",
        "test-artifacts/e2e/01-login.png",
        "bench-results/run.json",
        ".env",
        "oidc_provider/__pycache__/db.cpython-311.pyc",
        "oidc_provider.egg-info/PKG-INFO",
        ".git/config",
    ]
    for name in planted:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text('{"d": "private"}' if name.startswith("keys/") else "SECRET_KEY=x")
    context = context_files(checkout)
    assert not [name for name in planted if name in context]
    assert not [name for name in context if name.startswith(("tests/", "examples/", "keys/", ".ci/"))]
    assert {
        "setup.cfg",
        "pyproject.toml",
        "README.md",
        "oidc_provider/__init__.py",
        "templates/base.html",
    } <= context
    assert "oidc_provider/migrations/versions" in {str(Path(n).parent) for n in context}
    for name in context:  # nothing that looks like a private key or a secret value
        content = (checkout / name).read_bytes()
        assert b"PRIVATE KEY" not in content and b"SECRET_KEY=x" not in content, name
    for stage in stages():  # every COPY from the context finds what it names
        for copy in stage.all("COPY"):
            if copy.flags:
                continue
            for source in copy.value[:-1]:
                assert any(n == source or n.startswith(source.rstrip("/") + "/") for n in context), source
    assert "**" in ignore_patterns()  # an allow-list: a new file stays out until named


# -- building and running it ---------------------------------------------------------------


@pytest.fixture
def image_folder():
    """A folder the image's user may read (pytest's own is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="portal-image-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _as_user(uid: int, gid: int) -> dict:
    return {"user": uid, "group": gid, "extra_groups": []}


def _uids(pid: int) -> set[int]:
    """The real and effective uid of a process and of its children (granian's workers)."""
    found = set()
    for status in Path("/proc").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        parent = re.search(r"^PPid:\s+(\d+)", text, re.M).group(1)
        if status.parent.name == str(pid) or parent == str(pid):
            found |= {int(n) for n in re.search(r"^Uid:\s+(.*)$", text, re.M).group(1).split()[:2]}
    return found


@pytest.mark.deployment
@pytest.mark.skipif(
    PG_BIN is None or not BASE_PYTHON.exists(), reason="needs Debian's postgresql and python3.11"
)
@pytest.mark.skipif(os.geteuid() != 0, reason="starting the image's user needs root, as an engine has")
def test_the_image_builds_and_its_command_serves_as_its_user_with_compose_settings(image_folder, redis_url):
    context = image_folder / "context"
    copy_context(context)
    build = Build(image_folder, context, Path.home() / ".cache" / "pip")
    runtime = build.run_all()
    fs = build.fs

    # what the image holds: the environment, the source and templates; no tests, keys or secrets
    assert (fs / "opt/venv/bin/flask").exists() and (fs / "app/templates/base.html").exists()
    assert not (fs / "app/tests").exists() and not (fs / "app/instance/secret_key").exists()
    for path in (fs / "app").rglob("*"):
        if path.is_file() and path.suffix in {".json", ".pem", ".key", ".env", ""}:
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    assert (fs / "app/instance").stat().st_uid == IMAGE_USER

    uid, gid = build.ids()
    env = build.runtime_env()
    probe = subprocess.run(
        ["python", "-c", "import psycopg, granian, oidc_provider; print(oidc_provider.__file__)"],
        env=env,
        cwd=fs / "app",
        capture_output=True,
        text=True,
        timeout=120,
        **_as_user(uid, gid),
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(
        fs / "app/oidc_provider/__init__.py"
    )  # runs from /app, by its templates

    with stoppable_cluster() as cluster:
        cluster.folder.chmod(0o711)  # the image's user reaches the socket, as a container reaches the server
        port = free_port()
        variables = {"POSTGRES_PASSWORD": "unused"}
        compose_env = service_environment("provider-1", variables)
        shutil.copy2(ROOT / "clients.yaml", fs / "app/clients.yaml")  # compose mounts it there
        env = {
            **env,
            **compose_env,
            # this machine's services for compose's network names, and loopback only
            "DATABASE_URL": cluster.url,
            "RATELIMIT_STORAGE_URI": redis_url,
            "MAIL_SERVER": HOST,
            "MAIL_PORT": str(free_port()),
            "WEB_HOST": HOST,
            "WEB_PORT": str(port),
            "SECRET_KEY": "a-secret-key-of-this-test-run-only-0123456789",
        }
        command = service_command("provider-1")
        assert command[-1].endswith("exec " + " ".join(runtime.last("CMD").value))  # compose runs the CMD
        log = image_folder / "container.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [build.rewrite(part) for part in command],
                cwd=fs / "app",
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_as_user(uid, gid),
            )
        try:
            healthcheck = runtime.last("HEALTHCHECK").value[1:]
            flags = dict(f.lstrip("-").split("=", 1) for f in runtime.last("HEALTHCHECK").flags)
            deadline = time.monotonic() + int(flags["start-period"].rstrip("s")) + 30
            while True:  # the HEALTHCHECK, as the engine runs it: in the container, as its user
                checked = subprocess.run(
                    list(healthcheck),
                    env=env,
                    cwd=fs / "app",
                    capture_output=True,
                    timeout=10,
                    **_as_user(uid, gid),
                )
                if checked.returncode == 0:
                    break
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)  # bounded poll: the HEALTHCHECK's interval, shortened
            ready = requests.get(f"http://{HOST}:{port}/health/ready", timeout=10)
            assert ready.status_code == 200, ready.text
            page = requests.get(f"http://{HOST}:{port}/login", timeout=10)
            assert page.status_code == 200 and "Sign in" in page.text
            assert _uids(server.pid) == {uid}, "the server or a worker runs as another user"
            lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
            assert any('"oidc_provider.access"' in line for line in lines)  # LOG_FORMAT=json
        finally:
            os.killpg(server.pid, 15)
            server.wait(30)


# -- compose.yaml ------------------------------------------------------------------------------


def test_compose_runs_the_image_as_the_readme_says_with_healthchecks_and_order():
    portal = {"provider-1", "provider-2", "worker"}
    assert portal | {"proxy", "postgres", "redis", "mailpit"} <= set(SERVICES)
    for name in portal:
        assert SERVICES[name]["build"] == "." and SERVICES[name]["env_file"] == ".env"
        assert SERVICES[name]["environment"]["OUTBOX_WORKER"] == "external"  # the worker process sends
    assert service_command("provider-1") == service_command("provider-2")
    upgrade, serve = service_command("provider-1")[-1].split(" && ")
    assert upgrade == "flask --app oidc_provider db upgrade"  # every instance, under the migration lock
    assert serve == "exec flask --app oidc_provider serve"
    assert service_command("worker") == ["flask", "--app", "oidc_provider", "worker"]

    readme = (ROOT / "README.md").read_text()
    production = readme[readme.index("## Production") :]
    for command in (
        "docker compose up",
        "flask --app oidc_provider db upgrade",
        "flask --app oidc_provider serve",
        "flask --app oidc_provider worker",
    ):
        assert command in production, command
    env = {**dotenv_example(), **SERVICES["provider-1"]["environment"]}
    for name in env:
        assert name in SETTING_NAMES or name in COMPOSE_ONLY, f"{name} is no setting of config.py"
        if name in SETTING_NAMES:
            assert f"`{name}`" in readme, f"{name} is not in the README"
    for name, value in dotenv_example().items():  # an example, never a secret
        assert not (SECRET_NAMES.search(name) and value), f".env.example holds a value for {name}"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()

    # the wiring: the names and ports of the other services
    variables = {"POSTGRES_PASSWORD": "pw"}
    wired = service_environment("provider-1", variables)
    postgres = SERVICES["postgres"]["environment"]
    assert wired["DATABASE_URL"] == (
        f"postgresql+psycopg://{postgres['POSTGRES_USER']}:pw@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert wired["RATELIMIT_STORAGE_URI"].startswith("redis://redis:6379")
    assert (wired["MAIL_SERVER"], wired["MAIL_PORT"]) == ("mailpit", "1025")  # Mailpit's SMTP port
    assert wired["TRUSTED_PROXIES"] == "1" and int(wired["WEB_WORKERS"]) >= 2
    assert wired["WEB_PORT"] == stages()[-1].last("EXPOSE").value[0]

    healthy = {"condition": "service_healthy"}
    for name in ("provider-1", "provider-2"):
        assert SERVICES[name]["depends_on"] == {"postgres": healthy, "redis": healthy}
        assert "healthcheck" not in SERVICES[name]  # the image's HEALTHCHECK
    assert SERVICES["worker"]["depends_on"] == {"provider-1": healthy}  # the schema is migrated first
    assert SERVICES["worker"]["healthcheck"] == {"disable": True}
    assert SERVICES["proxy"]["depends_on"] == {"provider-1": healthy, "provider-2": healthy}
    for name in ("proxy", "postgres", "redis", "mailpit"):
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD", name
    assert "postgres-data:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert "postgres-data" in COMPOSE["volumes"]
    assert "${POSTGRES_PASSWORD:?" in (ROOT / "compose.yaml").read_text()  # no default password


def _caddy_upstreams(adapted: dict) -> tuple[list[str], dict]:
    [server] = adapted["apps"]["http"]["servers"].values()
    for route in server["routes"]:
        for handler in _handlers(route):
            if handler.get("handler") == "reverse_proxy":
                return [u["dial"] for u in handler["upstreams"]], handler
    raise AssertionError("no reverse_proxy in the Caddyfile")


def _handlers(route: dict):
    for handler in route.get("handle", []):
        yield handler
        for inner in handler.get("routes", []):
            yield from _handlers(inner)


@pytest.mark.skipif(shutil.which("caddy") is None, reason="needs Debian's caddy (make test installs it)")
def test_the_proxy_configuration_routes_round_robin_to_both_instances():
    [mount] = [v for v in SERVICES["proxy"]["volumes"] if v.endswith(":/etc/caddy/Caddyfile:ro")]
    caddyfile = ROOT / mount.split(":")[0]
    assert caddyfile.is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    adapted = subprocess.run(
        ["caddy", "adapt", "--config", str(caddyfile), "--adapter", "caddyfile", "--validate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert adapted.returncode == 0, adapted.stderr
    upstreams, proxy = _caddy_upstreams(json.loads(adapted.stdout))
    port = SERVICES["provider-1"]["environment"]["WEB_PORT"]
    assert upstreams == [f"provider-1:{port}", f"provider-2:{port}"]
    assert proxy["load_balancing"]["selection_policy"]["policy"] == "round_robin"
    assert proxy["load_balancing"]["try_duration"]  # a refused instance: the next one
    assert proxy["health_checks"]["active"]["uri"] == "/health/live"


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="needs docker-compose (make test installs it)"
)
def test_docker_compose_accepts_the_file(tmp_path):
    """docker-compose's own schema and interpolation, with an .env made from the example."""
    for name in ("compose.yaml", "clients.yaml", "Dockerfile", "deploy/Caddyfile"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    values = {**dotenv_example(), "SECRET_KEY": "s" * 48, "POSTGRES_PASSWORD": "pw"}
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env = {k: v for k, v in os.environ.items() if k not in values}
    checked = subprocess.run(
        ["docker-compose", "-f", "compose.yaml", "config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    resolved = yaml.safe_load(checked.stdout)
    assert resolved["services"]["provider-2"]["environment"]["DATABASE_URL"].endswith(
        ":pw@postgres:5432/portal"
    )
    assert resolved["services"]["provider-1"]["environment"]["SECRET_KEY"] == "s" * 48
    (tmp_path / ".env").write_text(f"SECRET_KEY={'s' * 48}\n")  # no database password: refused by name
    refused = subprocess.run(
        ["docker-compose", "-f", "compose.yaml", "config", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr
