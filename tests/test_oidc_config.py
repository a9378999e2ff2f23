"""The conformance suite's Config OP plan (oidcc-config-certification-test-plan)
and the setup checks every module makes on discovery and the JWKS."""

import re
from urllib.parse import urlsplit

import jwt as pyjwt
import pytest

ISSUER = "https://op.example.test"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


@pytest.fixture
def meta(client) -> dict:
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.json


def test_oidcc_discovery_endpoint_verification(meta, client):
    assert meta["issuer"] == ISSUER
    issuer = urlsplit(meta["issuer"])
    assert issuer.scheme == "https" and not issuer.query and not issuer.fragment
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert urlsplit(meta[name]).scheme == "https", name
        assert meta[name].startswith(ISSUER + "/"), name
    assert "code" in meta["response_types_supported"]
    assert "public" in meta["subject_types_supported"]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert "openid" in meta["scopes_supported"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "client_secret_post"} <= set(meta["token_endpoint_auth_methods_supported"])
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert {"sub", "name", "email", "email_verified"} <= set(meta["claims_supported"])
    assert client.get(urlsplit(meta["jwks_uri"]).path).status_code == 200


def test_discovery_members_are_typed(meta):
    for name, value in meta.items():
        if name.endswith("_supported") and not isinstance(value, bool):
            assert isinstance(value, list) and all(isinstance(v, str) for v in value), name
        elif name.endswith(("_endpoint", "_uri")) or name == "issuer":
            assert isinstance(value, str), name
    for name in ("ui_locales_supported", "claims_locales_supported"):
        assert all(BCP47.match(tag) for tag in meta.get(name, [])), name


def test_discovery_lists_only_what_is_implemented(meta):
    assert "address" not in meta["scopes_supported"]  # no address claims: the scope modules skip
    assert "plain" not in meta["code_challenge_methods_supported"]
    assert "none" not in meta["id_token_signing_alg_values_supported"]
    assert meta["response_modes_supported"] == ["query", "form_post"]
    assert meta["request_parameter_supported"] is False
    assert meta["request_uri_parameter_supported"] is False
    assert {"private_key_jwt", "none"} <= set(meta["token_endpoint_auth_methods_supported"])
    assert "ES256" in meta["id_token_signing_alg_values_supported"]


def test_discovery_endpoints_answer(meta, client):
    paths = {name: urlsplit(meta[name]).path for name in meta if name.endswith("_endpoint")}
    for name, path in paths.items():
        assert client.get(path).status_code != 404, name


def test_jwks_passes_the_suites_setup_checks(meta, client):
    response = client.get(urlsplit(meta["jwks_uri"]).path)
    assert response.status_code == 200
    keys = response.json["keys"]
    assert keys
    kids = [key["kid"] for key in keys]
    assert len(kids) == len(set(kids))  # each kid unique (F)
    for key in keys:
        assert not PRIVATE_MEMBERS & set(key), key["kid"]
        assert key["kty"] in ("RSA", "EC") and key["use"] == "sig"
        pyjwt.PyJWK(key)  # parses
    assert {key["alg"] for key in keys} == {"RS256", "ES256"}


def test_jwks_keeps_kids_unique_across_a_rotation(client, runner):
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    kids = [key["kid"] for key in client.get("/jwks.json").json["keys"]]
    assert len(kids) == len(set(kids)) >= 3
