"""The signing key ring lives in the database, shared by every instance
(reliability review, section 4 and defect 10): generated at the first need
under the database's lock, the private parts encrypted, cached per process,
imported from and exported to JWK files."""

import json
import multiprocessing
import stat
from datetime import timedelta

import conftest
import jwt as pyjwt
import pytest
from cryptography.fernet import InvalidToken
from joserfc.jwk import ECKey, RSAKey
from rp import RP, make_user
from sqlalchemy import event, text

from oidc_provider import create_app, crypto, keys, logout
from oidc_provider.db import db
from oidc_provider.models import SigningKey

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def rows(app) -> list[SigningKey]:
    with app.app_context():
        found = db.session.scalars(db.select(SigningKey).order_by(SigningKey.alg)).all()
        db.session.expunge_all()
        return found


def jwks_kids(app) -> set[str]:
    return {k["kid"] for k in app.test_client().get("/jwks.json").json["keys"]}


def settings(tmp_path, clock, **extra) -> dict:
    """What conftest's make_app passes, for apps built here without its create_all."""
    clients = tmp_path / "clients.yaml"
    clients.write_text(json.dumps({"clients": conftest.test_clients()}))
    return {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'test.sqlite3'}",
        "OIDC_ISSUER": "https://op.example.test",
        "OIDC_CLIENTS_FILE": str(clients),
        "OIDC_KEYS_DIR": str(tmp_path / "keys"),
        "SECRET_KEY": "test-secret-key",
        "CLOCK": clock,
        "WTF_CSRF_ENABLED": False,
        **extra,
    }


def old_layout_folder(folder, clock) -> dict[str, str]:
    """Key files as an older version wrote them into OIDC_KEYS_DIR: {alg: kid}."""
    folder.mkdir()
    made = {}
    at = clock.now.replace(tzinfo=None) - timedelta(days=30)
    for alg in keys.ALGS:
        params = {"alg": alg, "use": "sig"}
        key = (
            RSAKey.generate_key(2048, parameters=params)
            if alg == "RS256"
            else ECKey.generate_key("P-256", parameters=params)
        )
        key.ensure_kid()
        body = {
            "jwk": key.as_dict(private=True),
            "created_at": at.isoformat(),
            "activates_at": at.isoformat(),
        }
        (folder / f"{alg}-{key.kid}.json").write_text(json.dumps(body))
        made[alg] = key.kid
    (folder / ".lock").write_text("")
    (folder / "README.md").write_text("# Signing keys\n")
    return made


def test_first_need_generates_an_rs256_and_an_es256_key_in_the_database(app, tmp_path):
    assert rows(app) == []  # create_app made none
    assert app.test_client().get("/jwks.json").status_code == 200
    stored = rows(app)
    assert [r.alg for r in stored] == ["ES256", "RS256"]
    assert [r.public_jwk["kty"] for r in stored] == ["EC", "RSA"]
    assert not (tmp_path / "keys").exists()  # no key files any more


def test_create_app_does_no_database_work(tmp_path, clock):
    """`flask db upgrade` builds the app first: a database that cannot even be
    opened (its folder does not exist) must not stop it."""
    app = create_app(settings(tmp_path, clock, DATABASE_URL=f"sqlite:///{tmp_path}/absent/portal.sqlite3"))
    app.extensions["outbox_worker"].stop()
    assert not (tmp_path / "absent").exists()


def test_private_keys_are_not_readable_in_the_table_without_secret_key(make_app, app):
    app.test_client().get("/jwks.json")
    with app.app_context():
        raw = db.session.execute(text("SELECT kid, public_jwk, private_jwk FROM signing_key")).all()
    assert len(raw) == 2
    for kid, public, private in raw:
        public = json.loads(public) if isinstance(public, str) else public
        assert not PRIVATE_MEMBERS & set(public) and public["kid"] == kid
        assert '"d"' not in private and kid not in private  # ciphertext, not a JWK
        with app.app_context():  # the right SECRET_KEY opens it
            assert "d" in json.loads(crypto.decrypt(keys.SIGNING_KEYS, private))
    other = make_app(SECRET_KEY="another-secret-key")
    with other.app_context():
        for _, _, private in raw:
            with pytest.raises(InvalidToken):
                crypto.decrypt(keys.SIGNING_KEYS, private)
    response = other.test_client().get("/jwks.json")  # it cannot sign: not ready, no trace
    assert response.status_code == 503 and response.json["error"] == "server_error"


def test_kid_is_the_rfc7638_thumbprint(app):
    with app.app_context():
        for alg in keys.ALGS:
            key = keys.signing_key(alg)
            assert key.kid == key.thumbprint()


def test_a_restart_keeps_the_keys(make_app, app):
    with app.app_context():
        before = keys.public_jwks()
    with make_app().app_context():
        assert keys.public_jwks() == before


def test_jwks_has_public_members_only(client):
    body = client.get("/jwks.json").json
    assert {k["alg"] for k in body["keys"]} == {"RS256", "ES256"}
    kids = [k["kid"] for k in body["keys"]]
    assert len(set(kids)) == len(kids)
    for k in body["keys"]:
        assert not PRIVATE_MEMBERS & set(k)
        assert k["use"] == "sig"


def test_rotation_publishes_first_signs_after_the_delay_and_retires_late(app, client, runner, clock):
    with app.app_context():
        old = keys.signing_key("RS256").kid
    result = runner.invoke(args=["keys", "rotate", "--alg", "RS256"])
    assert result.exit_code == 0, result.output
    published = {k["kid"] for k in client.get("/jwks.json").json["keys"]}
    with app.app_context():
        assert keys.signing_key("RS256").kid == old  # not yet
    assert len(published) == 3

    clock.advance(seconds=app.config["OIDC_KEY_ROTATION_DELAY"])
    with app.app_context():
        signer = keys.signing_key("RS256").kid
    assert signer != old and signer in published
    assert old in {k["kid"] for k in client.get("/jwks.json").json["keys"]}  # tokens still verify

    clock.advance(seconds=app.config["ID_TOKEN_LIFETIME"] + 1)
    assert old not in {k["kid"] for k in client.get("/jwks.json").json["keys"]}
    listing = runner.invoke(args=["keys", "list"]).output
    assert f"{old}  RS256  expired" in listing and f"{signer}  RS256  signing" in listing

    assert runner.invoke(args=["keys", "rotate", "--alg", "RS256"]).exit_code == 0
    assert old not in {r.kid for r in rows(app)}  # expired keys go at the next rotation


def test_key_states_order(app, clock):
    at = clock.now.replace(tzinfo=None)
    hour = timedelta(hours=1)
    with app.app_context():
        keys.ensure_keys(at)
        keys.rotate("ES256", at, hour, hour)
        states = [s for k, s, _ in keys.key_states(keys.load_keys(), at, hour) if k.alg == "ES256"]
    assert states == ["signing", "published"]


def test_a_rotation_on_one_instance_reaches_the_others_within_the_cache_time(make_app, app, clock):
    other = make_app()
    before = jwks_kids(other)
    assert before == jwks_kids(app)
    assert app.test_cli_runner().invoke(args=["keys", "rotate", "--alg", "ES256"]).exit_code == 0
    assert len(jwks_kids(app)) == 3  # the instance that rotated knows at once
    assert jwks_kids(other) == before  # the other serves its cache...
    clock.advance(seconds=app.config["OIDC_KEY_CACHE_SECONDS"])
    assert jwks_kids(other) == jwks_kids(app)  # ...and re-reads the rows within OIDC_KEY_CACHE_SECONDS


def test_jwks_and_signing_do_not_query_the_database_per_request(app, clock):
    """The hot paths read the cache; the rows are compared once per OIDC_KEY_CACHE_SECONDS."""
    client = app.test_client()
    assert client.get("/jwks.json").status_code == 200  # the first need reads (and makes) the keys
    statements = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        for _ in range(50):
            assert client.get("/jwks.json").status_code == 200
            assert keys.signing_key("RS256") and keys.ring().verification_keys()
        assert statements == []
        clock.advance(seconds=app.config["OIDC_KEY_CACHE_SECONDS"])
        client.get("/jwks.json")
        client.get("/jwks.json")
    assert len(statements) == 1 and "signing_key" in statements[0]


def test_cached_keys_keep_serving_when_the_ring_cannot_be_read(app, clock):
    body = app.test_client().get("/jwks.json").data
    with app.app_context():
        db.session.execute(text("ALTER TABLE signing_key RENAME TO signing_key_away"))
        db.session.commit()
    clock.advance(seconds=app.config["OIDC_KEY_CACHE_SECONDS"] + 1)
    response = app.test_client().get("/jwks.json")
    assert response.status_code == 200 and response.data == body
    with app.app_context():
        assert keys.missing_algs() == []


def test_missing_algs_reports_without_generating(app, tmp_path, clock):
    with app.app_context():
        assert keys.missing_algs() == ["RS256", "ES256"]
    assert rows(app) == []  # the readiness hook never generates
    assert app.test_cli_runner().invoke(args=["keys", "ensure"]).exit_code == 0
    with app.app_context():
        keys.ring().refresh()
        assert keys.missing_algs() == []
    unmigrated = create_app(settings(tmp_path, clock, DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
    unmigrated.extensions["outbox_worker"].stop()
    with unmigrated.app_context():
        assert keys.missing_algs() == ["RS256", "ES256"]


def test_keys_ensure_on_a_database_without_the_table_says_what_to_run(tmp_path, clock):
    app = create_app(settings(tmp_path, clock))  # no create_all, no migration
    app.extensions["outbox_worker"].stop()
    result = app.test_cli_runner().invoke(args=["keys", "ensure"])
    assert result.exit_code == 1
    assert "no signing_key table" in result.output
    assert "flask --app oidc_provider db upgrade" in result.output
    assert "Traceback" not in result.output
    response = app.test_client().get("/jwks.json")  # a request that needs keys: 503, not a trace
    assert response.status_code == 503 and "Traceback" not in response.get_data(as_text=True)


def test_keys_ensure_on_postgresql_without_the_table_says_what_to_run(pg_app):
    with pg_app.app_context():
        db.session.execute(text("DROP TABLE signing_key"))
        db.session.commit()
    result = pg_app.test_cli_runner().invoke(args=["keys", "ensure"])
    assert result.exit_code == 1 and "flask --app oidc_provider db upgrade" in result.output
    assert pg_app.test_client().get("/jwks.json").status_code == 503


def test_keys_ensure_generates_once(runner, app):
    first = runner.invoke(args=["keys", "ensure"])
    assert first.exit_code == 0 and "generated 2 key(s)" in first.output
    second = runner.invoke(args=["keys", "ensure"])
    assert second.exit_code == 0 and "generated" not in second.output
    assert len(rows(app)) == 2


def test_an_id_token_signed_by_one_instance_verifies_on_another(make_app, app, clock):
    user = make_user(app)
    clock.advance(seconds=30)
    other = make_app()  # a second instance on the same database
    tokens = RP(app, app.test_client(), clock, user).tokens()
    jwks = other.test_client().get("/jwks.json").json["keys"]
    header = pyjwt.get_unverified_header(tokens["id_token"])
    [jwk] = [k for k in jwks if k["kid"] == header["kid"]]
    claims = pyjwt.decode(
        tokens["id_token"],
        pyjwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience="client",
        issuer=app.config["OIDC_ISSUER"],
        options={"verify_iat": False, "verify_exp": False},  # the test clock is not the wall clock
    )
    assert claims["sub"] == user.sub
    with other.test_request_context():
        assert logout.verify_id_token_hint(tokens["id_token"])["sub"] == user.sub


def test_the_first_token_on_an_empty_sqlite_database_stores_its_keys(make_app, app, clock):
    """The token endpoint signs after marking the code used (SQLite's write lock
    is held): the keys made then are stored with the token, and other instances see them."""
    user = make_user(app)
    clock.advance(seconds=30)
    tokens = RP(app, app.test_client(), clock, user).tokens()
    kid = pyjwt.get_unverified_header(tokens["id_token"])["kid"]
    assert kid in {r.kid for r in rows(app)}
    assert kid in jwks_kids(make_app())


def test_an_older_versions_key_folder_is_imported_with_its_kids(make_app, tmp_path, clock):
    folder = tmp_path / "old-keys"
    made = old_layout_folder(folder, clock)
    app = make_app(OIDC_KEYS_DIR=str(folder))
    result = app.test_cli_runner().invoke(args=["keys", "ensure"])
    assert result.exit_code == 0, result.output
    assert "imported 2 key(s)" in result.output and "generated" not in result.output
    assert jwks_kids(app) == set(made.values())
    with app.app_context():
        assert {alg: keys.signing_key(alg).kid for alg in keys.ALGS} == made
    assert all(r.private_jwk != "" and '"d"' not in r.private_jwk for r in rows(app))


def test_the_first_need_also_imports_an_older_versions_keys(make_app, tmp_path, clock):
    folder = tmp_path / "old-keys"
    made = old_layout_folder(folder, clock)
    app = make_app(OIDC_KEYS_DIR=str(folder), DATABASE_URL=f"sqlite:///{tmp_path / 'lazy.sqlite3'}")
    assert jwks_kids(app) == set(made.values())
    assert sorted(r.kid for r in rows(app)) == sorted(made.values())


def test_export_then_import_into_a_fresh_database_round_trips(make_app, app, tmp_path, clock):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["keys", "rotate", "--alg", "RS256"]).exit_code == 0
    before_list = runner.invoke(args=["keys", "list"]).output
    before_jwks = app.test_client().get("/jwks.json").json
    folder = tmp_path / "export"
    result = runner.invoke(args=["keys", "export", str(folder)])
    assert result.exit_code == 0, result.output
    assert "private signing keys in clear" in result.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.glob("*.json"))
    assert len(files) == 3
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert "d" in json.loads(f.read_text())["jwk"]

    fresh = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    imported = fresh.test_cli_runner().invoke(args=["keys", "import", str(folder)])
    assert imported.exit_code == 0 and "imported 3 key(s), skipped 0" in imported.output
    assert fresh.test_cli_runner().invoke(args=["keys", "list"]).output == before_list
    assert fresh.test_client().get("/jwks.json").json == before_jwks
    again = fresh.test_cli_runner().invoke(args=["keys", "import", str(folder)])
    assert "imported 0 key(s), skipped 3" in again.output
    assert len(rows(fresh)) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a key file"),
        (
            '{"jwk": {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}, "created_at": "2026-01-01T00:00:00", '
            '"activates_at": "2026-01-01T00:00:00"}',
            "not an RS256 (RSA) or ES256 (EC) signing key",
        ),
        ("public", "holds no private key"),
        ("wrong kid", "is not the key's RFC 7638 thumbprint"),
    ],
)
def test_import_refuses_what_is_not_a_signing_key_and_names_the_file(app, tmp_path, clock, content, message):
    folder = tmp_path / "incoming"
    made = old_layout_folder(folder, clock)
    path = folder / f"ES256-{made['ES256']}.json"
    body = json.loads(path.read_text())
    if content == "public":
        body["jwk"] = {m: v for m, v in body["jwk"].items() if m != "d"}
        content = json.dumps(body)
    elif content == "wrong kid":
        body["jwk"]["kid"] = "chosen-by-hand"
        content = json.dumps(body)
    path.write_text(content)
    result = app.test_cli_runner().invoke(args=["keys", "import", str(folder)])
    assert result.exit_code == 1 and message in result.output and path.name in result.output
    assert "Traceback" not in result.output
    assert rows(app) == []  # nothing added: every file is checked first


def test_rotation_is_in_the_audit_log(runner):
    assert runner.invoke(args=["keys", "rotate", "--alg", "ES256"]).exit_code == 0
    shown = runner.invoke(args=["audit", "show"]).output
    assert "key_rotated" in shown


# -- many instances starting at once on an empty database --------------------------

STARTERS = 6
ROUNDS = 3


def _start(config, barrier, results) -> None:
    """One provider process: built, then released with the others to serve its JWKS."""
    try:
        app = create_app(config)
        app.extensions["outbox_worker"].stop()
        barrier.wait(timeout=60)
        with app.app_context():
            results.put((keys.ring().jwks_body().decode(), keys.signing_key("RS256").kid))
    except Exception as exc:  # reported to the test, which fails on it
        results.put((f"{type(exc).__name__}: {exc}", None))


def _race(config) -> list[tuple[str, str]]:
    fork = multiprocessing.get_context("fork")
    barrier, results = fork.Barrier(STARTERS), fork.Queue()
    starters = [fork.Process(target=_start, args=(config, barrier, results)) for _ in range(STARTERS)]
    for p in starters:
        p.start()
    answers = [results.get(timeout=120) for _ in starters]
    for p in starters:
        p.join(timeout=30)
        assert p.exitcode == 0
    return answers


def _assert_one_key_per_algorithm(app, answers) -> None:
    stored = rows(app)
    assert sorted(r.alg for r in stored) == ["ES256", "RS256"], answers
    bodies = {body for body, _ in answers}
    assert len(bodies) == 1, bodies  # identical JWKS on every instance
    assert {k["kid"] for k in json.loads(bodies.pop())["keys"]} == {r.kid for r in stored}
    assert len({signer for _, signer in answers}) == 1


def test_instances_starting_together_on_an_empty_sqlite_file_make_one_key_per_algorithm(
    make_app, tmp_path, clock
):
    for n in range(ROUNDS):
        database = f"sqlite:///{tmp_path / f'race-{n}.sqlite3'}"
        app = make_app(DATABASE_URL=database)
        with app.app_context():
            db.engine.dispose()  # the starters are forked: no connection is shared with them
        _assert_one_key_per_algorithm(app, _race(settings(tmp_path, clock, DATABASE_URL=database)))


def test_instances_starting_together_on_an_empty_postgresql_database_make_one_key_per_algorithm(
    pg_app, postgres_url, tmp_path, clock
):
    for _ in range(ROUNDS):
        with pg_app.app_context():
            db.session.execute(db.delete(SigningKey))
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        _assert_one_key_per_algorithm(pg_app, _race(settings(tmp_path, clock, DATABASE_URL=postgres_url)))
