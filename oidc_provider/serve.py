"""`flask --app oidc_provider serve`: the production server (granian, WSGI).

`WEB_WORKERS` processes with `WEB_THREADS` threads each, on `WEB_HOST:WEB_PORT`.
The command checks what would be wrong with several workers, prepares what
they share (the metrics folder, the logging set-up), then becomes the
granian server: it replaces this process, so a service manager's signals
reach granian directly. Further granian options can be given as its
`GRANIAN_*` environment variables. `flask run` stays for debugging.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from . import logs

TARGET = "oidc_provider:create_app"


def refusal(config: Mapping[str, Any], debug: bool = False) -> str | None:
    """Why these settings must not be served, or None. Several workers on
    memory:// would each count the rate limits alone: N workers, N times the
    guesses."""
    workers = config["WEB_WORKERS"]
    uri = str(config["RATELIMIT_STORAGE_URI"])
    if workers > 1 and uri.startswith("memory://") and not (debug or config["RATELIMIT_MEMORY_PER_WORKER"]):
        return (
            f"RATELIMIT_STORAGE_URI is {uri}, which counts in each process: with WEB_WORKERS={workers} "
            f"every rate limit would let {workers} times as many guesses through. Set "
            "RATELIMIT_STORAGE_URI=redis://… (shared by every worker and instance), or WEB_WORKERS=1 "
            "(or RATELIMIT_MEMORY_PER_WORKER=true to accept the multiplied limits)."
        )
    return None


def metrics_folder(config: Mapping[str, Any], runtime: Path) -> Path:
    """The folder the workers share their metrics in, emptied: the configured
    one, else a fresh private folder. Counts of an earlier run must not add up
    with this one's."""
    folder = Path(config.get("PROMETHEUS_MULTIPROC_DIR") or runtime / "metrics")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    return folder


def command(config: Mapping[str, Any], log_config: Path) -> list[str]:
    """The granian command line for these settings."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--factory",
        "--host",
        str(config["WEB_HOST"]),
        "--port",
        str(config["WEB_PORT"]),
        "--workers",
        str(config["WEB_WORKERS"]),
        "--blocking-threads",
        str(config["WEB_THREADS"]),
        "--no-ws",
        "--respawn-failed-workers",
        "--log-config",
        str(log_config),
        TARGET,
    ]


def prepare(config: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The command and environment to serve with (a private runtime folder
    holds the metrics and the server's logging set-up)."""
    runtime = Path(tempfile.mkdtemp(prefix="portal-serve-"))
    log_config = runtime / "logging.json"
    log_config.write_text(json.dumps(logs.granian_config(config["LOG_FORMAT"])))
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_folder(config, runtime))
    # Every password check allocates argon2id's 19 MiB and frees it: with a fixed
    # mmap threshold glibc gives such blocks back at once instead of keeping them
    # in a thread's arena (RSS would grow by 19 MiB per thread that ever hashed).
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(1024 * 1024))
    env.setdefault("MALLOC_ARENA_MAX", "2")
    return command(config, log_config), env


@click.command("serve")
@with_appcontext
def serve_command() -> None:
    """Serve the provider with granian (WEB_HOST, WEB_PORT, WEB_WORKERS, WEB_THREADS)."""
    if problem := refusal(current_app.config, current_app.debug):
        raise click.ClickException(problem)
    argv, env = prepare(current_app.config)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)  # noqa: S606 (granian takes this process's place)


def init_app(app: Flask) -> None:
    app.cli.add_command(serve_command)
