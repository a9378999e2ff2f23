"""The provider as production runs it, pinned to one core: a fresh folder,
a clients file with the bench's two apps, the database migrated, N people
provisioned with `flask users import`, then the production server command."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pyotp
import yaml
from signin import App, Person

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
PASSWORD = "bench password for every person 42"


def sha256(value: str) -> str:
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()


def apps(port: int) -> tuple[App, App]:
    """Two first-party apps: one the people sign in to, one for single sign-on."""
    return (
        App("bench-a", secrets.token_urlsafe(32), f"http://{HOST}:{port + 1}/callback"),
        App("bench-b", secrets.token_urlsafe(32), f"http://{HOST}:{port + 2}/callback"),
    )


def _registration(app: App) -> dict:
    return {
        "client_id": app.client_id,
        "name": app.client_id,
        "redirect_uris": [app.redirect_uri],
        "client_secret_sha256": sha256(app.secret),
        "scopes": ["openid", "profile", "email", "offline_access"],
        "first_party": True,
    }


@dataclass
class Provider:
    port: int
    env: dict[str, str]
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def flask(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(BIN / "flask"), "--app", "oidc_provider", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def rss_mib(self) -> dict:
        """Resident memory of the server's main process and of each worker process
        under it (a server without worker processes is its own worker)."""
        assert self.process is not None
        workers = {pid: _rss(pid) for pid in _children(self.process.pid)}
        main = _rss(self.process.pid)
        return {"workers": workers or {self.process.pid: main}, "total": main + sum(workers.values())}


    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's processes have used so far."""
        assert self.process is not None
        return sum(_cpu(pid) for pid in [self.process.pid, *_children(self.process.pid)])


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _rss(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def environment(folder: Path, port: int, database_url: str, clients_file: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "OIDC_", "MAIL_", "RATELIMIT_"))}
    env.update(
        OIDC_ISSUER=f"http://{HOST}:{port}",
        DATABASE_URL=database_url,
        OIDC_CLIENTS_FILE=str(clients_file),
        OIDC_KEYS_DIR=str(folder / "keys"),
        SECRET_KEY=secrets.token_urlsafe(32),
        OUTBOX_DIR=str(folder / "outbox"),
        WEB_HOST=HOST,
        WEB_PORT=str(port),
        # The codes the SSO scenario makes are redeemed by the next one: give
        # them time to wait their turn (the lifetime changes no request's cost).
        AUTHORIZATION_CODE_LIFETIME="900",
        # Every simulated browser comes from one address: the per-IP limit on
        # parked sign-ins would stop the sign-in scenario after a few dozen.
        RATELIMIT_AUTHORIZE="1000000 per minute",
        **extra,
    )
    return env


def provision(provider: Provider, count: int) -> list[Person]:
    """`count` activated people with an authenticator app, imported in one go."""
    from argon2 import PasswordHasher

    from oidc_provider.passwords import HASHER

    hashed = HASHER.hash(PASSWORD)  # the product's parameters; one hash serves everyone
    assert isinstance(HASHER, PasswordHasher)
    people = [
        Person(f"person{i:06d}@bench.example.com", PASSWORD, pyotp.random_base32(32)) for i in range(count)
    ]
    lines = [
        json.dumps(
            {
                "email": p.email,
                "name": f"Person {i}",
                "password_hash": hashed,
                "activated": True,
                "totp_secret": p.totp_secret,
            }
        )
        for i, p in enumerate(people)
    ]
    source = provider.folder / "people.jsonl"
    source.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    provider.flask("users", "import", str(source))
    print(f"  imported {count} people in {time.perf_counter() - started:.1f} s", flush=True)
    return people


@contextmanager
def provider(folder: Path, port: int, database_url: str, command: list[str], cpu: str, **extra: str) -> Iterator[Provider]:
    """Prepare the folder and database, then serve with `command` pinned to `cpu`."""
    folder.mkdir(parents=True, exist_ok=True)
    clients_file = folder / "clients.yaml"
    bench_apps = apps(port)
    clients_file.write_text(yaml.safe_dump({"clients": [_registration(a) for a in bench_apps]}))
    served = Provider(port, environment(folder, port, database_url, clients_file, **extra), folder)
    served.flask("db", "upgrade")
    served.flask("keys", "ensure")
    served.apps = bench_apps  # type: ignore[attr-defined]
    log = (folder / "server.log").open("ab")
    served.process = subprocess.Popen(
        ["taskset", "-c", cpu, *command], cwd=ROOT, env=served.env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_ready(served)
        yield served
    finally:
        served.process.terminate()
        try:
            served.process.wait(20)
        except subprocess.TimeoutExpired:
            served.process.kill()
        log.close()


def _wait_ready(served: Provider) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert served.process is not None
        if served.process.poll() is not None:
            raise RuntimeError(f"the server exited: see {served.folder / 'server.log'}")
        try:
            with urllib.request.urlopen(f"{served.url}/.well-known/openid-configuration", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not answer within 60 s")
