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


class Cluster:
    """A PostgreSQL cluster of its own in `folder`, on a Unix socket: `start()`,
    `stop()` (as an operator's `pg_ctl stop` would, for outage tests) and
    `start()` again on the same socket and port."""

    RUN = {"check": True, "capture_output": True, "timeout": 60}

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data, self.socket_dir = folder / "data", folder / "sock"
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        subprocess.run(
            _as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"),
            **self.RUN,
        )
        self.port = _free_port()  # also keys the server's shared memory: two runs at once must differ

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@/portal?host={self.socket_dir}&port={self.port}"

    def start(self) -> None:
        """Start and return once it accepts connections."""
        options = (
            f"-k {self.socket_dir} -c listen_addresses='' -p {self.port} -c fsync=off -c max_connections=200"
        )
        subprocess.run(
            _as_postgres(
                str(BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.folder / "log"),
                "-o",
                options,
                "-w",
                "start",
            ),
            **self.RUN,
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends the sessions cleanly, `immediate` like a crash."""
        subprocess.run(
            _as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"),
            capture_output=True,
            timeout=60,
        )

    def create_database(self, name: str = "portal") -> None:
        subprocess.run(
            _as_postgres(
                str(BIN / "createdb"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                name,
            ),
            **self.RUN,
        )


@contextmanager
def stoppable_cluster() -> Iterator[Cluster]:
    """A new cluster with a `portal` database, running while the block runs."""
    folder = Path(tempfile.mkdtemp(prefix="portal-pg-"))
    cluster = Cluster(folder)
    cluster.start()
    try:
        cluster.create_database()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """A new PostgreSQL cluster on a Unix socket, its URL while the block runs."""
    with stoppable_cluster() as cluster:
        yield cluster.url


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
