"""The same product on PostgreSQL, as production runs it: the migrations build
the schema, and sign-in, tokens, rotation, code reuse and logout work (the
cluster and `pg_app`: tests/pgserver.py)."""

import pytest
from rp import RP, make_user, query
from sqlalchemy import inspect

from oidc_provider.db import db
from oidc_provider.models import OutboxMessage, Token


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
        [queued] = db.session.scalars(db.select(OutboxMessage).filter_by(kind="backchannel_logout")).all()
        assert (queued.label, queued.status) == ("client", "pending")
