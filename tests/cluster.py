"""The deployment of compose.yaml as real processes on this machine, for the
scale-out tests: provider instances started with the compose file's command
and environment (`flask … serve`, several worker processes each), the outbox
worker, a round-robin proxy in front of them, a back-channel logout receiver,
and a mail server that can be closed, made to hang, and opened again.

Nothing listens beyond 127.0.0.1, and every process is stopped by the context
manager that started it."""

from __future__ import annotations

import http.client
import http.server
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import requests
import yaml
from aiosmtpd.controller import Controller
from mailserver import Handler, Inbox

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the virtualenv's bin/: `flask` of the compose commands is found there
HOST = "127.0.0.1"
START_TIMEOUT = 60  # seconds for an instance to migrate, start its workers and answer
STOP_TIMEOUT = 15

# -- compose.yaml: the commands and environment the test runs with ------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def compose() -> dict:
    """compose.yaml, its anchors merged (YAML `<<`)."""
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def dotenv(path: Path) -> dict[str, str]:
    """An env_file as compose reads it: KEY=VALUE lines, # comments."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} in `text`."""

    def value(match: re.Match) -> str:
        name, kind, default = match.groups()
        if variables.get(name):
            return variables[name]
        if kind == "?":
            raise KeyError(f"{name}: {default}")
        return default or ""

    return _VARIABLE.sub(value, text)


def service_environment(service: str, variables: dict[str, str]) -> dict[str, str]:
    """What a container of `service` gets: its env_file, then its `environment` (which wins)."""
    spec = compose()["services"][service]
    env: dict[str, str] = {}
    files = spec.get("env_file", [])
    for name in [files] if isinstance(files, str) else files:
        env.update(dotenv(ROOT / (".env.example" if name == ".env" else name)))
    for name, raw in (spec.get("environment") or {}).items():
        env[name] = interpolate(str(raw), variables)
    return env


def service_command(service: str) -> list[str]:
    command = compose()["services"][service]["command"]
    return command if isinstance(command, list) else ["sh", "-c", command]


# -- processes ------------------------------------------------------------------------


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class Process:
    """A command of the deployment, run in a process group of its own (so that
    kill -9 reaches the server and its worker processes at once)."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None
    started_at: int = 0  # the log's size when it was last started

    def start(self) -> None:
        self.started_at = self.log_size
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9 of the whole group, as a crashed host or an OOM kill would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        if not self.running:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)

    def lines(self, since: int = 0) -> list[str]:
        """The log's lines, from byte offset `since`."""
        with self.log.open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace").splitlines()

    @property
    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


@dataclass
class Instance(Process):
    """A provider instance: `flask … serve` on its own port."""

    port: int = 0
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self) -> None:
        """Until /health/ready answers 200 and every worker process has started
        (a bounded poll while the process migrates and starts)."""
        deadline = time.monotonic() + START_TIMEOUT
        started = f"Started worker-{self.workers}"
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited:\n{_tail(self.log)}")
            if started in "\n".join(self.lines(self.started_at)):
                try:
                    if requests.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.1)  # bounded poll: the instance is starting
        raise RuntimeError(f"{self.name} not ready within {START_TIMEOUT} s:\n{_tail(self.log)}")

    def access_lines(self, request_id: str, since: int = 0) -> list[dict]:
        """The JSON log lines of one request (LOG_FORMAT=json)."""
        found = []
        for line in self.lines(since):
            if request_id in line:
                found.append(json.loads(line))
        return found


# -- the proxy ------------------------------------------------------------------------

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


@dataclass
class Served:
    instance: str
    method: str
    path: str
    status: int


class RoundRobinProxy:
    """An HTTP reverse proxy, as deploy/Caddyfile configures Caddy: each request
    to the next instance in turn; an instance that refuses the connection is
    skipped for the next one; X-Forwarded-For/-Proto/-Host set (the instances
    trust one proxy). Every answer says which instance gave it (X-Served-By),
    and `served` lists them in order."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self.served: list[Served] = []
        self.skipped: list[str] = []  # instances that refused a connection
        self._turn = itertools.count()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                proxy.forward(self)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = _forward  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers |= {
            "X-Forwarded-For": handler.client_address[0],
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": handler.headers.get("Host", ""),
        }
        with self._lock:
            first = next(self._turn)
        for n in range(len(self.instances)):
            instance = self.instances[(first + n) % len(self.instances)]
            connection = http.client.HTTPConnection(HOST, instance.port, timeout=60)
            try:
                connection.request(handler.command, handler.path, body=body, headers=headers)
            except ConnectionRefusedError:
                connection.close()
                self.skipped.append(instance.name)
                continue
            try:
                response = connection.getresponse()
                content = response.read()
            except (OSError, http.client.HTTPException):  # the instance died with the request
                connection.close()
                self._answer(handler, 502, [], b"bad gateway", instance.name)
                return
            connection.close()
            self._answer(handler, response.status, response.getheaders(), content, instance.name)
            return
        self._answer(handler, 503, [], b"no instance answers", "-")

    def _answer(self, handler, status: int, headers: list, content: bytes, name: str) -> None:
        self.served.append(Served(name, handler.command, handler.path.split("?")[0], status))
        handler.send_response_only(status)
        for key, value in headers:
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.send_header("X-Served-By", name)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(content)

    def __enter__(self) -> RoundRobinProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- an app's back-channel logout endpoint --------------------------------------------


@dataclass
class Delivery:
    path: str
    logout_token: str
    at: float  # time.time() when it arrived


class LogoutReceiver:
    """The apps' back-channel logout endpoints on one port: answers 200 to a
    POSTed logout_token and keeps it. `stop()` closes the port (connections are
    refused), `start()` opens it again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[Delivery] = []
        self.arrived = threading.Condition()
        self.server: http.server.ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                token = parse_qs(body).get("logout_token", [""])[0]
                with receiver.arrived:
                    receiver.received.append(Delivery(self.path, token, time.time()))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, paths: set[str], after: int = 0, timeout: float = 20) -> list[Delivery]:
        """The deliveries from index `after` on, once each of `paths` got one."""
        with self.arrived:
            self.arrived.wait_for(lambda: paths <= {d.path for d in self.received[after:]}, timeout)
            return list(self.received[after:])


# -- the mail server: open, closed, hanging --------------------------------------------


class MailServer:
    """An SMTP server (aiosmtpd) on one fixed port, which a test closes (the
    port refuses connections), makes hang (a listener that accepts and never
    says a word) and opens again. One inbox across all of it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self.inbox.port = port
        self.controller: Controller | None = None
        self.hanging: socket.socket | None = None
        self.accepting: threading.Thread | None = None
        self.held: list[socket.socket] = []

    def open(self) -> None:
        self.close()
        self.controller = Controller(Handler(self.inbox), hostname=HOST, port=self.port)
        self.controller.start()

    def hang(self) -> None:
        """Accept connections and never answer (a stuck server)."""
        self.close()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(16)
        listener.settimeout(0.1)  # the accepting thread looks whether to stop this often
        self.hanging = listener

        def accept() -> None:
            while self.hanging is listener:
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                self.held.append(connection)

        self.accepting = threading.Thread(target=accept, daemon=True)
        self.accepting.start()

    def close(self) -> None:
        """Nothing listens on the port any more."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        if self.hanging is not None:
            listener, self.hanging = self.hanging, None
            self.accepting.join(5)  # a thread inside accept() would keep the port open
            listener.close()
        for connection in self.held:
            connection.close()
        self.held.clear()


# -- the whole deployment -------------------------------------------------------------


@dataclass
class Deployment:
    """compose.yaml's services as processes: instances behind the proxy, the
    worker, and what they talk to."""

    instances: list[Instance]
    worker: Process
    proxy: RoundRobinProxy
    receiver: LogoutReceiver
    mail: MailServer
    env: dict[str, str]
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.proxy.url

    def instance(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """`flask --app oidc_provider ARGS…` with the instances' environment."""
        return subprocess.run(
            [str(BIN / "flask"), "--app", "oidc_provider", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@contextmanager
def running(*processes: Process) -> Iterator[None]:
    """Start `processes`; stop whichever still runs on the way out."""
    try:
        for process in processes:
            process.start()
        yield
    finally:
        for process in processes:
            process.stop()
