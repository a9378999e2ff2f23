"""`flask serve`: the production server as a real process (granian), what it
refuses to run with, and metrics summed over its worker processes."""

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from mailserver import free_port
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from rp import forms

from oidc_provider import serve

ROOT = Path(__file__).resolve().parent.parent
FLASK = Path(sys.executable).parent / "flask"


@pytest.fixture
def environment(make_app, tmp_path):
    """What an operator sets, for a database whose schema is built."""
    database = f"sqlite:///{tmp_path / 'served.sqlite3'}"
    make_app(DATABASE_URL=database)  # builds the tables
    port = free_port()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WEB_", "RATELIMIT_", "FLASK_"))},
        "DATABASE_URL": database,
        "SECRET_KEY": "test-secret-key",
        "OIDC_ISSUER": f"http://127.0.0.1:{port}",
        "OIDC_KEYS_DIR": str(tmp_path / "keys"),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "WEB_PORT": str(port),
        "LOG_FORMAT": "json",
    }


@contextmanager
def serving(env: dict, log: Path, workers: int = 1):
    """`flask serve` until the block ends: its base URL, once it answers and
    every worker has started (a bounded poll while the process starts)."""
    base = f"http://127.0.0.1:{env['WEB_PORT']}"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(FLASK), "--app", "oidc_provider", "serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not _ready(base, log, workers):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("flask serve did not start:\n" + log.read_text())
            time.sleep(0.1)  # bounded poll: the process is starting up
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _ready(base: str, log: Path, workers: int) -> bool:
    if f"Started worker-{workers}" not in log.read_text():
        return False
    try:
        return requests.get(f"{base}/health/live", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_serve_refuses_several_workers_counting_rate_limits_in_memory(environment):
    """Each process would count alone: two workers, twice the guesses (F-08)."""
    env = {**environment, "WEB_WORKERS": "2", "RATELIMIT_STORAGE_URI": "memory://"}
    run = subprocess.run(
        [str(FLASK), "--app", "oidc_provider", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "RATELIMIT_STORAGE_URI" in run.stderr and "WEB_WORKERS=2" in run.stderr
    assert "Traceback" not in run.stderr


def test_several_workers_on_memory_only_when_debugging_or_accepted():
    config = {"WEB_WORKERS": 4, "RATELIMIT_STORAGE_URI": "memory://", "RATELIMIT_MEMORY_PER_WORKER": False}
    assert "4 times as many guesses" in serve.refusal(config)
    assert serve.refusal(config, debug=True) is None
    assert serve.refusal({**config, "RATELIMIT_MEMORY_PER_WORKER": True}) is None
    assert serve.refusal({**config, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379"}) is None
    assert serve.refusal({**config, "WEB_WORKERS": 1}) is None


def test_serve_answers_http_without_a_server_version(environment, tmp_path):
    with serving(environment, tmp_path / "serve.log") as base:
        live = requests.get(f"{base}/health/live", timeout=10)
        ready = requests.get(f"{base}/health/ready", timeout=10)
        discovery = requests.get(f"{base}/.well-known/openid-configuration", timeout=10)
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == {"status": "ok"}
    assert discovery.json()["issuer"] == environment["OIDC_ISSUER"]
    for response in (live, ready, discovery):
        server = response.headers.get("Server", "")
        assert not re.search(r"\d", server), server  # no version to look up vulnerabilities by
        assert "Werkzeug" not in server and "Python" not in server
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def _wrong_password(base: str, n: int) -> int:
    """A browser of its own (its own connection): the sign-in page, then a wrong password."""
    with requests.Session() as browser:
        page = browser.get(f"{base}/login", timeout=30)
        [form] = [f for f in forms(page.content) if "csrf_token" in dict(f["fields"])]
        data = {**dict(form["fields"]), "email": f"nobody{n}@example.com", "password": "not the password 123"}
        return browser.post(f"{base}/login", data=data, timeout=30).status_code


def _failed_signins(exposition: str) -> float:
    for family in text_string_to_metric_families(exposition):
        if family.name == "portal_signins":
            return sum(s.value for s in family.samples if s.labels.get("outcome") == "failed")
    return 0.0


def test_metrics_add_up_over_the_worker_processes(environment, redis_url, tmp_path):
    """Two workers answer the sign-ins; /metrics, from either, counts them all."""
    folder = tmp_path / "metrics"
    env = {
        **environment,
        "WEB_WORKERS": "2",
        "RATELIMIT_STORAGE_URI": redis_url,
        "RATELIMIT_LOGIN": "100 per minute",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    with serving(env, tmp_path / "serve.log", workers=2) as base:
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda n: _wrong_password(base, n), range(16)))
        exposition = requests.get(f"{base}/metrics", timeout=10).text
    assert statuses == [401] * 16
    assert _failed_signins(exposition) == 16

    by_process = {}
    for file in folder.glob("counter_*.db"):
        [metric] = [m for m in MultiProcessCollector.merge([str(file)]) if m.name == "portal_signins"] or [
            None
        ]
        by_process[file.name] = _failed_signins_of(metric)
    answered = [count for count in by_process.values() if count]
    assert len(answered) == 2  # both worker processes answered some of them
    assert sum(answered) == 16


def _failed_signins_of(metric) -> float:
    if metric is None:
        return 0.0
    return sum(
        s.value for s in metric.samples if s.name.endswith("_total") and s.labels.get("outcome") == "failed"
    )
