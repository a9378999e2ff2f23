"""The processes the end-to-end tests talk to, started the way `make run` and
`make demo` start them: the provider (`flask db upgrade`, then `flask serve`),
one demo relying-party app (`python -m examples.demo_rp`), the launcher of
`make demo` with every app of clients.yaml (`python -m examples.launcher`), and
a small callback server standing in for an RP that has no web server of its own.

Every process is started inside a context manager that stops it on the way
out, whatever happened; nothing listens beyond 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
import yaml
from mailserver import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv's bin/ (pytest runs from .venv/bin/python)
HOST = "127.0.0.1"
START_TIMEOUT = 30  # seconds for a process to answer its health check
STOP_TIMEOUT = 10  # seconds for a process to exit after SIGTERM before SIGKILL
SERVE = [str(BIN / "flask"), "--app", "oidc_provider", "serve"]  # on WEB_HOST:WEB_PORT, as `make run`


def url(port: int) -> str:
    return f"http://{HOST}:{port}"


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _wait_healthy(process: subprocess.Popen, health_url: str, log: Path) -> None:
    """Poll `health_url` until it answers 200; fail with the log if the process dies or is slow."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{_tail(log)}")
        try:
            if requests.get(health_url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)  # bounded poll: the process is starting up
    raise RuntimeError(f"{health_url} did not answer within {START_TIMEOUT} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path, health_url: str) -> Iterator[None]:
    """Run `command` (output to `log`) until the block ends; ready once `health_url` answers."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(process, health_url, log)
            yield
        finally:
            _stop(process)


# -- the provider ------------------------------------------------------------------------


@dataclass
class Provider:
    """A running Login Portal: its issuer URL, the environment it runs with
    (the CLI needs the same one) and its folder (database, keys, log)."""

    url: str
    env: dict[str, str]
    folder: Path

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """`flask --app oidc_provider ARGS…` against this provider's database."""
        return subprocess.run(
            [str(BIN / "flask"), "--app", "oidc_provider", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    @staticmethod
    def lacks(done: subprocess.CompletedProcess) -> bool:
        """The CLI has no such command (yet)."""
        return done.returncode != 0 and "No such command" in done.stderr

    @property
    def log(self) -> Path:
        return self.folder / "provider.log"


def provider_env(
    folder: Path, port: int, smtp_port: int, clients_file: Path, **settings: str
) -> dict[str, str]:
    """The environment of `make run`, pointed at `folder` and the test SMTP server, with
    limits high enough for one IP address (127.0.0.1) to run every test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "OIDC_", "MAIL_", "WEB_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        WEB_HOST=HOST,
        WEB_PORT=str(port),
        OIDC_ISSUER=settings.pop("OIDC_ISSUER", url(port)),  # http://localhost:… where passkeys are tried
        DATABASE_URL=f"sqlite:///{folder / 'e2e.sqlite3'}",
        OIDC_KEYS_DIR=str(folder / "keys"),
        OIDC_CLIENTS_FILE=str(clients_file),
        SECRET_KEY=secrets.token_urlsafe(32),
        MAIL_SERVER=HOST,
        MAIL_PORT=str(smtp_port),
        MAIL_TIMEOUT="5",
        OUTBOX_DIR=str(folder / "outbox"),
        RATELIMIT_LOGIN="1000 per minute",
        RATELIMIT_EMAIL="1000 per hour",
        TIME_ZONE="UTC",  # the zone the tests' times are written in (the portal's default is Europe/Amsterdam)
        OTP_RESEND_COOLDOWN="0",  # the journey asks for codes faster than a person would
        OTP_SENDS_PER_HOUR="100",
    )
    env.update(settings)  # a test's own provider may set any of these
    return env


@contextmanager
def provider_process(
    folder: Path, port: int, smtp_port: int, clients: list[dict], **settings: str
) -> Iterator[Provider]:
    """Write the clients file, migrate the database, and serve with `flask serve` as `make run` does."""
    folder.mkdir(parents=True, exist_ok=True)
    clients_file = folder / "clients.yaml"
    clients_file.write_text(yaml.safe_dump({"clients": clients}, sort_keys=False))
    env = provider_env(folder, port, smtp_port, clients_file, **settings)
    provider = Provider(env["OIDC_ISSUER"], env, folder)
    migrated = provider.cli("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    with running(SERVE, provider.env, provider.log, f"{provider.url}/health/ready"):
        yield provider


# -- the demo relying-party apps ------------------------------------------------------------


@dataclass(frozen=True)
class DemoApp:
    """One instance of examples/demo_rp, registered as `client_id`."""

    name: str
    client_id: str
    port: int
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @property
    def url(self) -> str:
        return url(self.port)

    def registration(self) -> dict:
        """Its entry in clients.yaml (as the shipped file registers the apps)."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "description": f"The {self.name} demo app.",
            "home_url": f"{self.url}/",
            "redirect_uris": [f"{self.url}/callback"],
            "post_logout_redirect_uris": [f"{self.url}/"],
            "backchannel_logout_uri": f"{self.url}/backchannel-logout",
            "token_endpoint_auth_method": "client_secret_basic",
            "client_secret_sha256": sha256(self.secret),
            "scopes": ["openid", "profile", "email", "offline_access"],
            "first_party": True,
        }


@contextmanager
def demo_app_process(app: DemoApp, issuer: str, log: Path) -> Iterator[DemoApp]:
    """`python -m examples.demo_rp` as `make demo` runs it."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DEMO_ISSUER": issuer,
        "DEMO_CLIENT_ID": app.client_id,
        "DEMO_CLIENT_SECRET": app.secret,
        "DEMO_NAME": app.name,
        "DEMO_PORT": str(app.port),
        "DEMO_URL": app.url,
        "DEMO_SECRET_KEY": secrets.token_urlsafe(32),
    }
    with running([str(BIN / "python"), "-m", "examples.demo_rp"], env, log, f"{app.url}/healthz"):
        yield app


# -- make demo: the launcher with every app of clients.yaml ----------------------------------

DEMO_PORTS = re.compile(r"http://127\.0\.0\.1:(500\d)")  # the shipped file's loopback ports


def shipped_clients_on_free_ports() -> tuple[int, list[dict]]:
    """The shipped clients.yaml, its ports 5000–5009 moved to free ones (a `make demo` of
    someone else may hold them): the portal's port and the registrations."""
    ports: dict[str, int] = {}

    def moved(match: re.Match) -> str:
        return url(ports.setdefault(match.group(1), free_port()))

    text = DEMO_PORTS.sub(moved, (ROOT / "clients.yaml").read_text())
    return ports.get("5000") or free_port(), yaml.safe_load(text)["clients"]


@dataclass
class Launcher:
    """A running `make demo`: the portal, the demo apps it started, what it printed."""

    portal: Provider
    apps: list[DemoApp]
    process: subprocess.Popen
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum`; the exit status once it stopped (SIGKILL after STOP_TIMEOUT)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            raise AssertionError(f"the launcher ignored signal {signum}:\n{_tail(self.log)}") from None


@contextmanager
def launcher_process(folder: Path, smtp_port: int, background: bool = False) -> Iterator[Launcher]:
    """`make demo` for the shipped clients.yaml (on free ports), ready once it printed the
    URLs; stopped on the way out. `background`: started with SIGINT ignored."""
    folder.mkdir(parents=True, exist_ok=True)
    portal_port, clients = shipped_clients_on_free_ports()
    clients_file = folder / "clients.yaml"
    clients_file.write_text(yaml.safe_dump({"clients": clients}, sort_keys=False))
    portal = Provider(url(portal_port), provider_env(folder, portal_port, smtp_port, clients_file), folder)
    migrated = portal.cli("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    apps = [
        DemoApp(c["name"], c["client_id"], urlsplit(c["home_url"]).port, f"dev-secret-{c['client_id']}")
        for c in clients
    ]
    log = folder / "launcher.log"
    # In the background, a shell without job control starts a command with SIGINT ignored
    # (`make demo &` in a script); an ignored signal stays ignored in the child.
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if background else None
    try:
        with log.open("ab") as out:
            process = subprocess.Popen(
                [str(BIN / "python"), "-m", "examples.launcher"],
                cwd=ROOT,
                env=portal.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
    launcher = Launcher(portal, apps, process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ctrl-C stops all" not in launcher.output:
            if process.poll() is not None:
                raise RuntimeError(f"the launcher exited with {process.returncode}:\n{_tail(log)}")
            assert time.monotonic() < deadline, f"no URLs printed within {START_TIMEOUT} s:\n{_tail(log)}"
            time.sleep(0.1)  # bounded poll: the launcher is starting up
        yield launcher
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)


# -- an RP's callback, for a library that has no web server ---------------------------------


class CallbackServer:
    """Answers any GET on 127.0.0.1:<port> with a small page and remembers the URL,
    like the callback of an RP: the test hands that URL to the RP library."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[str] = []
        seen = self.received
        base = url(port)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                seen.append(base + self.path)
                body = b"<!doctype html><title>RP</title><h1>The app received the answer</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((HOST, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return url(self.port)

    def last(self, path: str) -> tuple[str, dict[str, str]]:
        """The latest URL received on `path`, and its query parameters."""
        hits = [u for u in self.received if urlsplit(u).path == path]
        assert hits, f"nothing received on {path}; got {self.received}"
        return hits[-1], {k: v[0] for k, v in parse_qs(urlsplit(hits[-1]).query).items()}

    def __enter__(self) -> CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT)
