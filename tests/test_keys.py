import json
import stat
from datetime import timedelta

from oidc_provider import keys


def test_first_run_generates_an_rs256_and_an_es256_key(app, tmp_path):
    files = sorted((tmp_path / "keys").glob("*.json"))
    assert [f.name.split("-")[0] for f in files] == ["ES256", "RS256"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        body = json.loads(f.read_text())
        assert "d" in body["jwk"]  # the private key stays in the file


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
        assert not {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & set(k)
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


def test_key_states_order(tmp_path, clock):
    at = clock.now.replace(tzinfo=None)
    keys.ensure_keys(tmp_path, at)
    hour = timedelta(hours=1)
    keys.rotate(tmp_path, "ES256", at, hour, hour)
    states = [s for k, s, _ in keys.key_states(keys.read_keys(tmp_path), at, hour) if k.alg == "ES256"]
    assert states == ["signing", "published"]


def test_workers_starting_together_make_one_key_per_algorithm(tmp_path, clock):
    from concurrent.futures import ProcessPoolExecutor

    at = clock.now.replace(tzinfo=None)
    with ProcessPoolExecutor(max_workers=4) as pool:
        list(pool.map(keys.ensure_keys, [tmp_path] * 4, [at] * 4))
    assert sorted(k.alg for k in keys.read_keys(tmp_path)) == ["ES256", "RS256"]


def test_rotation_is_in_the_audit_log(runner):
    assert runner.invoke(args=["keys", "rotate", "--alg", "ES256"]).exit_code == 0
    shown = runner.invoke(args=["audit", "show"]).output
    assert "key_rotated" in shown
