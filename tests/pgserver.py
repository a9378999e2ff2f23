"""A throwaway PostgreSQL cluster for the whole test session, on a Unix socket
in a temporary folder (Debian's `postgresql` package; `make test` installs it
when missing): `postgres_url`, and `pg_app`, a provider whose schema the
migrations built. Tests that need it skip when PostgreSQL is not installed."""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask_migrate import upgrade

from oidc_provider.db import db

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


def _as_postgres(*args: str) -> list[str]:
    """Run the server as the postgres user when we are root (it refuses root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """A new PostgreSQL cluster on a Unix socket, its URL while the block runs."""
    folder = Path(tempfile.mkdtemp(prefix="portal-pg-"))
    data, socket_dir = folder / "data", folder / "sock"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(socket_dir, "postgres")
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run(_as_postgres(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"), **run)
    port = _free_port()  # also keys the server's shared memory: two runs at once must differ
    options = f"-k {socket_dir} -c listen_addresses='' -p {port} -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_postgres(
            str(BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-o", options, "-w", "start"
        ),
        **run,
    )
    try:
        subprocess.run(
            _as_postgres(
                str(BIN / "createdb"), "-h", str(socket_dir), "-p", str(port), "-U", "postgres", "portal"
            ),
            **run,
        )
        yield f"postgresql+psycopg://postgres@/portal?host={socket_dir}&port={port}"
    finally:
        subprocess.run(
            _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    if BIN is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    with throwaway_cluster() as url:
        yield url


@pytest.fixture
def pg_app(make_app, postgres_url):
    """A provider on the session's PostgreSQL database, its schema freshly built
    by the migrations (not create_all)."""
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        db.drop_all()
        db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        upgrade()
    return app


@pytest.fixture
def pg_admin(postgres_url):
    """A superuser connection (autocommit) to the session's cluster."""
    from sqlalchemy import create_engine, make_url

    engine = create_engine(make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        yield connection
    engine.dispose()


@pytest.fixture
def empty_pg_database(pg_admin, postgres_url):
    """The URL of a new, empty database of the session's cluster, dropped after the test."""
    import secrets

    from sqlalchemy import make_url

    name = f"portal_{secrets.token_hex(4)}"
    pg_admin.execute(db.text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    pg_admin.execute(db.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    pg_admin.execute(db.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
