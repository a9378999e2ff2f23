import copy
import hashlib

import pytest
import yaml

from oidc_provider import clients
from oidc_provider.clients import ClientsFileError

GOOD = {
    "client_id": "modeler",
    "name": "Modeler",
    "redirect_uris": ["https://modeler.example.com/callback"],
    "client_secret_sha256": hashlib.sha256(b"s3cret").hexdigest(),
}


def problems_with(**changes):
    entry = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is ...:
            entry.pop(key)
        else:
            entry[key] = value
    return clients.validate({"clients": [entry]})


def test_a_good_entry_has_no_problems():
    assert problems_with() == []


def test_the_shipped_file_registers_the_six_apps():
    registered = clients.load("clients.yaml")
    assert {c.name for c in registered.values()} == {
        "Modeler",
        "MyWEM",
        "Forum",
        "Academy",
        "Partner Portal",
        "DevOps Portal",
    }
    for c in registered.values():
        assert all(u.startswith("http://127.0.0.1:") for u in c.redirect_uris)
        assert c.first_party


def test_duplicate_client_id():
    problems = clients.validate({"clients": [GOOD, GOOD]})
    assert problems == ["client 'modeler': field 'client_id': duplicate client_id"]


def test_redirect_uri_with_fragment():
    [p] = problems_with(redirect_uris=["https://modeler.example.com/cb#x"])
    assert p.startswith("client 'modeler': field 'redirect_uris[0]':") and "fragment" in p


@pytest.mark.parametrize("uri", ["http://modeler.example.com/cb", "ftp://x/cb", "/relative"])
def test_non_https_redirect_uri_other_than_loopback(uri):
    [p] = problems_with(redirect_uris=[uri])
    assert "client 'modeler': field 'redirect_uris[0]'" in p and "https" in p


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5001/cb", "http://localhost:8080/cb", "http://[::1]/cb"])
def test_loopback_http_redirect_uri_is_allowed(uri):
    assert problems_with(redirect_uris=[uri]) == []


def test_unknown_field():
    [p] = problems_with(redirect_uri="https://typo.example.com")
    assert p.startswith("client 'modeler': field 'redirect_uri': unknown field")


def test_unknown_auth_method():
    [p] = problems_with(token_endpoint_auth_method="client_secret_jwt")
    assert p.startswith("client 'modeler': field 'token_endpoint_auth_method': unknown method")


def test_missing_secret_for_confidential_client():
    [p] = problems_with(client_secret_sha256=...)
    assert p == (
        "client 'modeler': field 'client_secret_sha256': "
        "a confidential client (client_secret_basic) needs a secret"
    )


def test_secret_must_be_a_sha256_hex_digest_not_clear_text():
    [p] = problems_with(client_secret_sha256="s3cret")
    assert "field 'client_secret_sha256': must be 64 lowercase hex digits" in p


def test_secret_from_unset_environment_variable(monkeypatch):
    monkeypatch.delenv("MODELER_SECRET", raising=False)
    [p] = problems_with(client_secret_sha256=..., client_secret_env="MODELER_SECRET")
    assert "field 'client_secret_env': environment variable 'MODELER_SECRET' is not set" in p


def test_secret_from_environment_variable_is_checked_in_constant_time(monkeypatch):
    monkeypatch.setenv("MODELER_SECRET", "from-the-env")
    entry = {**GOOD, "client_secret_env": "MODELER_SECRET"}
    entry.pop("client_secret_sha256")
    client = clients._build(entry)
    assert client.check_client_secret("from-the-env")
    assert not client.check_client_secret("from-the-env!")


def test_public_client_must_not_have_a_secret():
    [p] = problems_with(token_endpoint_auth_method="none")
    assert "a none client must not have a secret" in p


def test_require_pkce_must_be_true_or_false():
    [p] = problems_with(require_pkce="yes")
    assert p == "client 'modeler': field 'require_pkce': must be true or false"
    assert clients._build({**GOOD, "require_pkce": True}).require_pkce
    assert not clients._build(GOOD).require_pkce  # public clients need PKCE whatever it says


def test_private_key_jwt_needs_jwks():
    [p] = problems_with(token_endpoint_auth_method="private_key_jwt", client_secret_sha256=...)
    assert p.startswith("client 'modeler': field 'jwks':")


def test_missing_redirect_uris_and_name():
    problems = problems_with(redirect_uris=..., name=...)
    assert "client 'modeler': field 'name': required, a non-empty string" in problems
    assert "client 'modeler': field 'redirect_uris': required, at least one URL" in problems


def test_unknown_scope_and_algorithm():
    problems = problems_with(scopes=["openid", "admin"], id_token_signed_response_alg="HS256")
    assert any("field 'scopes': unknown scope 'admin'" in p for p in problems)
    assert any("field 'id_token_signed_response_alg'" in p for p in problems)


def test_entry_without_client_id_is_named_by_position():
    problems = clients.validate({"clients": [GOOD, {"name": "x"}]})
    assert "clients[1]: field 'client_id': required, a non-empty string" in problems


def test_not_a_clients_file():
    assert clients.validate(["a list"]) == ["top level: expected a mapping with a 'clients' list"]


def test_app_refuses_to_start_naming_client_and_field(make_app):
    bad = {**GOOD, "redirect_uris": ["http://modeler.example.com/cb"]}
    with pytest.raises(ClientsFileError, match=r"client 'modeler': field 'redirect_uris\[0\]'"):
        make_app(clients=[bad])


def test_clients_check_lists_every_mistake(runner, app, tmp_path):
    bad = [
        {**GOOD, "redirect_uris": ["http://x.example/cb#f"], "colour": "blue"},
        {**GOOD, "token_endpoint_auth_method": "magic"},
    ]
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump({"clients": bad}))
    result = runner.invoke(args=["clients", "check"])
    assert result.exit_code == 1
    for expected in (
        "field 'redirect_uris[0]'",
        "field 'colour': unknown field",
        "duplicate client_id",
        "field 'token_endpoint_auth_method'",
    ):
        assert expected in result.output


def test_clients_check_on_a_good_file(runner):
    result = runner.invoke(args=["clients", "check"])
    assert result.exit_code == 0 and "no problems" in result.output


def test_clients_secret_prints_a_secret_and_its_hash_line(runner):
    result = runner.invoke(args=["clients", "secret", "modeler"])
    lines = [line.strip() for line in result.output.splitlines()]
    secret = lines[1]
    assert len(secret) >= 43
    assert f"client_secret_sha256: {hashlib.sha256(secret.encode()).hexdigest()}" in lines


def test_client_is_immutable_and_matches_redirect_uris_exactly():
    client = clients._build(GOOD)
    assert client.check_redirect_uri("https://modeler.example.com/callback")
    assert not client.check_redirect_uri("https://modeler.example.com/callback/x")
    assert not client.check_redirect_uri("https://modeler.example.com/callback?a=1")
    with pytest.raises(AttributeError):
        client.name = "changed"


SHIPPED = {**GOOD, "client_secret_sha256": hashlib.sha256(b"dev-secret-modeler").hexdigest()}


def test_the_shipped_development_secrets_are_refused_on_an_https_issuer(make_app):
    """I-01: modeler:dev-secret-modeler authenticated at /token of an https server."""
    with pytest.raises(
        ClientsFileError, match=r"client 'modeler': field 'client_secret_sha256': is the deve"
    ):
        make_app(clients=[SHIPPED])
    assert clients.validate({"clients": [SHIPPED]}, "https://login.example.com")
    assert clients.validate({"clients": [SHIPPED]}, "http://127.0.0.1:5000") == []  # local use


def test_a_shipped_secret_from_the_environment_is_refused_too(monkeypatch):
    monkeypatch.setenv("MODELER_SECRET", "dev-secret-modeler")
    entry = {**GOOD, "client_secret_env": "MODELER_SECRET"}
    entry.pop("client_secret_sha256")
    [problem] = clients.validate({"clients": [entry]}, "https://login.example.com")
    assert problem.startswith("client 'modeler': field 'client_secret_env': is the development secret")


def test_clients_check_names_the_client_with_a_shipped_secret(runner, app, tmp_path):
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump({"clients": [SHIPPED]}))
    result = runner.invoke(args=["clients", "check"])
    assert result.exit_code == 1
    assert "client 'modeler': field 'client_secret_sha256'" in result.output
    assert "clients secret modeler" in result.output


def test_the_shipped_file_starts_on_the_local_http_issuer(make_app):
    app = make_app(OIDC_CLIENTS_FILE="clients.yaml", OIDC_ISSUER="http://127.0.0.1:5000")
    assert "modeler" in app.extensions["clients"]
