"""`make demo`: the Login Portal and one demo app (examples/demo_rp) for every app
registered in clients.yaml, each on the port its registration names.

The provider runs as `make run` runs it (`flask run`, a process of its own);
the demo apps run in this process, one server thread and one Flask app each
(their own Authlib client, session cookie and local sessions). The URLs are
printed once every one of them answers. SIGINT (Ctrl-C) or SIGTERM stops them
all, also when started in the background, where the shell ignores SIGINT.

Settings: OIDC_ISSUER (http://127.0.0.1:5000) and OIDC_CLIENTS_FILE
(clients.yaml), as the provider reads them. A registration is served when it
fits the demo app (loopback `http://127.0.0.1:PORT` with /callback,
/backchannel-logout and the development secret `dev-secret-<client_id>`);
any other is listed as not started, with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import requests
import yaml
from flask import has_app_context
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .demo_rp import create_app, demo

HOST = "127.0.0.1"
START_TIMEOUT = 30  # seconds for everything to answer
STOP_TIMEOUT = 10  # seconds for the provider to exit after SIGTERM, and for each app's server
PORTAL = "Login Portal"
FIRST_HUE = 210  # blue; the next apps go round the colour wheel from there
log = logging.getLogger("examples.launcher")


@dataclass(frozen=True)
class DemoRegistration:
    """A client of clients.yaml that a demo app can play: its URL comes from its redirect URI."""

    client_id: str
    name: str
    description: str
    base_url: str  # http://127.0.0.1:PORT
    hue: int  # its colour: the apps are spread over the colour wheel

    @property
    def port(self) -> int:
        return urlsplit(self.base_url).port or 80

    @property
    def secret(self) -> str:
        return f"dev-secret-{self.client_id}"

    def config(self, issuer: str) -> dict[str, Any]:
        """The demo app's settings (as examples/demo_rp/__main__.py reads them from DEMO_*)."""
        return {
            "ISSUER": issuer,
            "CLIENT_ID": self.client_id,
            "CLIENT_SECRET": self.secret,
            "NAME": self.name,
            "DESCRIPTION": self.description,
            "HUE": self.hue,
            "BASE_URL": self.base_url,
            "SECRET_KEY": secrets.token_hex(32),  # sessions end when the demo stops
        }


def why_not(entry: dict[str, Any]) -> str | None:
    """Why the demo app cannot play this registration, or None when it can."""
    callbacks = [u for u in entry.get("redirect_uris") or [] if str(u).endswith("/callback")]
    if not callbacks:
        return "no redirect URI ending in /callback"
    base = callbacks[0].removesuffix("/callback")
    url = urlsplit(base)
    if url.scheme != "http" or url.hostname != HOST or not url.port or url.path:
        return f"its redirect URI is not on http://{HOST}:PORT"
    if entry.get("backchannel_logout_uri") != f"{base}/backchannel-logout":
        return f"its backchannel_logout_uri is not {base}/backchannel-logout"
    if f"{base}/" not in (entry.get("post_logout_redirect_uris") or []):
        return f"its post_logout_redirect_uris do not name {base}/"
    development = hashlib.sha256(f"dev-secret-{entry.get('client_id')}".encode()).hexdigest()
    if not secrets.compare_digest(str(entry.get("client_secret_sha256", "")), development):
        return f"its secret is not the development secret dev-secret-{entry.get('client_id')}"
    return None


def registrations(clients_file: Path) -> tuple[list[DemoRegistration], dict[str, str]]:
    """The registrations of `clients_file` the demo apps play, and the others with the reason."""
    entries = (yaml.safe_load(clients_file.read_text()) or {}).get("clients") or []
    reasons = {str(entry.get("client_id")): why_not(entry) for entry in entries}
    fitting = [entry for entry in entries if not reasons[str(entry.get("client_id"))]]
    playable = [
        DemoRegistration(
            entry["client_id"],
            entry.get("name") or entry["client_id"],
            entry.get("description") or "",
            next(u for u in entry["redirect_uris"] if u.endswith("/callback")).removesuffix("/callback"),
            (FIRST_HUE + index * 360 // len(fitting)) % 360,
        )
        for index, entry in enumerate(fitting)
    ]
    return playable, {client_id: reason for client_id, reason in reasons.items() if reason}


# -- logging: every line says which app wrote it --------------------------------------------


class AppName(logging.Filter):
    """Adds `app`: the demo app handling the request, else the launcher."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.app = getattr(record, "app", None) or (demo().name if has_app_context() else "demo")
        return True


def request_handler(name: str) -> type[WSGIRequestHandler]:
    """Werkzeug's request log lines ("GET / HTTP/1.1" 200 -), with the app's name."""

    class Handler(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            if type == "info" and urlsplit(getattr(self, "path", "")).path == "/healthz":
                return  # the launcher's own checks
            getattr(logging.getLogger("werkzeug"), type)(message, *args, extra={"app": name})

    return Handler


def copy_lines(source: IO[str], prefix: str) -> None:
    """The provider's output, line by line, with its name in front."""
    for line in source:
        sys.stdout.write(f"{prefix}{line}")
        sys.stdout.flush()


# -- the processes --------------------------------------------------------------------------


def start_provider(issuer: str) -> subprocess.Popen:
    """`flask run` on the issuer's port, its output prefixed. It ignores Ctrl-C (SIGINT
    reaches the terminal's whole process group): `stop` ends it with SIGTERM."""
    url = urlsplit(issuer)
    command = [str(Path(sys.executable).parent / "flask"), "--app", "oidc_provider", "run"]
    command += ["--host", url.hostname or HOST, "--port", str(url.port or 80)]
    env = {**os.environ, "OIDC_ISSUER": issuer, "PYTHONUNBUFFERED": "1"}
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the child as ignored
    try:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
    finally:
        signal.signal(signal.SIGINT, handler)
    threading.Thread(target=copy_lines, args=(process.stdout, f"[{PORTAL}] "), daemon=True).start()
    return process


def start_app(registration: DemoRegistration, issuer: str) -> BaseWSGIServer:
    """One demo app on its port, served by a thread of its own. A port in use: Werkzeug
    says which and exits."""
    app = create_app(registration.config(issuer))
    server = make_server(
        HOST, registration.port, app, threaded=True, request_handler=request_handler(registration.name)
    )
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=registration.client_id, daemon=True
    ).start()
    return server


def stop(provider: subprocess.Popen | None, servers: list[BaseWSGIServer]) -> None:
    """Everything at once: the provider gets SIGTERM while the apps' servers wind down."""
    if provider is not None and provider.poll() is None:
        provider.terminate()
    stopping = [threading.Thread(target=server.shutdown) for server in servers]
    for thread in stopping:
        thread.start()
    for thread, server in zip(stopping, servers, strict=True):
        thread.join(STOP_TIMEOUT)
        server.server_close()
    if provider is not None:
        try:
            provider.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            provider.kill()
            provider.wait()


def answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_until_answering(urls: list[str], provider: subprocess.Popen, stopping: threading.Event) -> bool:
    """Poll every URL's /healthz until all answer; False if the provider exits, a stop
    is asked for, or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(urls)
    while waiting and time.monotonic() < deadline and provider.poll() is None and not stopping.is_set():
        waiting = [url for url in waiting if not answers(url)]
        if waiting:
            stopping.wait(0.1)
    if provider.poll() is not None:
        log.error("the Login Portal stopped (exit %s)", provider.returncode)
    elif waiting and not stopping.is_set():
        log.error("not answering after %s s: %s", START_TIMEOUT, " ".join(waiting))
    return not waiting


def banner(issuer: str, playing: list[DemoRegistration], skipped: dict[str, str]) -> str:
    """The URLs to open, printed once they answer."""
    rows = [(PORTAL, f"{issuer}/")] + [(r.name, f"{r.base_url}/") for r in playing]
    width = max(len(name) for name, _ in rows) + 2
    lines = [f"{name:<{width}}{url}" for name, url in rows]
    lines += [f"(not started: {client_id}: {reason})" for client_id, reason in skipped.items()]
    return "\n".join([*lines, f"Ctrl-C stops all {len(rows)}."])


def run(issuer: str, clients_file: Path, stopping: threading.Event) -> int:
    """Serve until `stopping` is set (0) or the provider stops by itself (1)."""
    playing, skipped = registrations(clients_file)
    servers: list[BaseWSGIServer] = []
    provider = None
    try:
        for registration in playing:
            servers.append(start_app(registration, issuer))
        provider = start_provider(issuer)
        if not wait_until_answering([issuer] + [r.base_url for r in playing], provider, stopping):
            return 0 if stopping.is_set() else 1
        print(banner(issuer, playing, skipped), flush=True)
        while not stopping.wait(0.5):
            if provider.poll() is not None:
                log.error("the Login Portal stopped (exit %s)", provider.returncode)
                return 1
        return 0
    finally:
        stop(provider, servers)


def main() -> int:
    """`make demo`: run until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="[%(app)s] %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(AppName())
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when the shell started us ignoring SIGINT
        signal.signal(signum, lambda *_: stopping.set())
    issuer = os.environ.get("OIDC_ISSUER", "http://127.0.0.1:5000").rstrip("/")
    return run(issuer, Path(os.environ.get("OIDC_CLIENTS_FILE", "clients.yaml")), stopping)


if __name__ == "__main__":
    sys.exit(main())
