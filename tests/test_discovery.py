def test_discovery_issuer_and_jwks(client):
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "max-age" in response.headers["Cache-Control"]
    meta = response.json
    assert meta["issuer"] == "https://op.example.test"
    assert meta["jwks_uri"] == "https://op.example.test/jwks.json"
    assert "RS256" in meta["id_token_signing_alg_values_supported"]


def test_discovery_is_built_once(app, client):
    client.get("/.well-known/openid-configuration")
    body = app.extensions["discovery_body"]
    client.get("/.well-known/openid-configuration")
    assert app.extensions["discovery_body"] is body


def test_healthz_checks_the_database(client):
    """/healthz is the readiness check under its older name."""
    body = client.get("/healthz").json
    assert body["status"] == "ok" and body["checks"]["database"] == {"status": "ok"}
    assert body == client.get("/health/ready").json


def test_unknown_endpoint_is_a_clean_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert b"Traceback" not in response.data
