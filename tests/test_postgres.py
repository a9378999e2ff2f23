"""The same product on PostgreSQL, as production runs it: the migrations build
the schema, and sign-in, tokens, rotation, code reuse and logout work.

A throwaway cluster is started on a Unix socket in a temporary folder (Debian's
`postgresql` package; `make test` installs it when missing)."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from flask_migrate import upgrade
from rp import RP, make_user, query
from sqlalchemy import inspect

from oidc_provider.db import db
from oidc_provider.models import LogoutDelivery, Token

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
pytestmark = pytest.mark.skipif(BIN is None, reason="PostgreSQL is not installed (Debian package postgresql)")


def _as_postgres(*args: str) -> list[str]:
    """Run the server as the postgres user when we are root (it refuses root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    folder = Path(tempfile.mkdtemp(prefix="portal-pg-"))
    data, socket_dir = folder / "data", folder / "sock"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(socket_dir, "postgres")
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run(_as_postgres(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"), **run)
    port = _free_port()  # also keys the server's shared memory: two runs at once must differ
    options = f"-k {socket_dir} -c listen_addresses='' -p {port} -c fsync=off"
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


@pytest.fixture
def pg_app(make_app, postgres_url):
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        db.drop_all()
        db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        upgrade()  # the schema as the migrations build it, not create_all
    return app


@pytest.fixture
def pg_rp(pg_app, clock):
    user = make_user(pg_app)
    clock.advance(seconds=30)
    return RP(pg_app, pg_app.test_client(), clock, user)


def test_migrations_build_every_table_on_postgresql(pg_app):
    with pg_app.app_context():
        tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert tables == set(db.metadata.tables)


def test_sign_in_tokens_and_refresh_rotation_on_postgresql(pg_rp):
    tokens = pg_rp.tokens(scope="openid email offline_access")
    info = pg_rp.app.test_client().get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status_code == 200 and info.json["email"] == pg_rp.user.email
    rotated = pg_rp.refresh(tokens["refresh_token"])
    assert rotated.status_code == 200 and rotated.json["refresh_token"] != tokens["refresh_token"]
    reused = pg_rp.refresh(tokens["refresh_token"])
    assert reused.status_code == 400 and reused.json["error"] == "invalid_grant"
    assert pg_rp.refresh(rotated.json["refresh_token"]).status_code == 400  # the family is revoked


def test_code_reuse_revokes_on_postgresql(pg_rp):
    code = pg_rp.login_code()
    first = pg_rp.token(code)
    assert first.status_code == 200
    assert pg_rp.token(code).json["error"] == "invalid_grant"
    with pg_rp.app.app_context():
        assert db.session.query(Token).one().revoked_at is not None


def test_logout_queues_back_channel_deliveries_on_postgresql(pg_rp):
    tokens = pg_rp.tokens()
    response = pg_rp.browser.get(
        "/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": "pg",
        },
    )
    assert query(response.location) == {"state": "pg"}
    with pg_rp.app.app_context():
        assert db.session.query(LogoutDelivery).filter_by(client_id="client").count() == 1
