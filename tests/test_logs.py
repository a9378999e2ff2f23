"""Log lines: JSON or text, one access line per request, the request id on
every line of a request and in the response, and never a secret."""

import io
import json
import logging
import re
from urllib.parse import urlsplit

import pytest
from conftest import SECRETS
from flask import current_app
from mailserver import links
from rp import RP, make_user

from oidc_provider import logs


@pytest.fixture
def output():
    """What the app's log handler writes, as JSON lines (the handler `init_app` installs, on a buffer)."""
    buffer = io.StringIO()
    handler = logs.handler("json", buffer)
    root = logging.getLogger()
    root.addHandler(handler)
    yield buffer
    root.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_one_json_access_line_per_request_with_its_id(client, output):
    response = client.get("/.well-known/openid-configuration?x=secret-query-value")
    [line] = lines(output)
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
    assert line["logger"] == "oidc_provider.access" and line["level"] == "INFO"
    assert (line["method"], line["endpoint"], line["status"]) == ("GET", "endpoints.discovery", 200)
    assert line["path"] == "/.well-known/openid-configuration"
    assert isinstance(line["duration_ms"], float) and line["time"].endswith("+00:00")
    assert "secret-query-value" not in output.getvalue()


def test_every_line_of_a_request_carries_its_id(app, output):
    @app.get("/test-only/log")
    def log_something() -> str:
        current_app.logger.warning("something to say")
        return "ok"

    client = app.test_client()
    first, second = client.get("/test-only/log"), client.get("/test-only/log")
    said = lines(output)
    assert [(line["message"], line["request_id"]) for line in said] == [
        ("something to say", first.headers["X-Request-ID"]),
        ("GET /test-only/log 200 " + said[1]["message"].split(" 200 ")[1], first.headers["X-Request-ID"]),
        ("something to say", second.headers["X-Request-ID"]),
        ("GET /test-only/log 200 " + said[3]["message"].split(" 200 ")[1], second.headers["X-Request-ID"]),
    ]
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    logging.getLogger("oidc_provider").warning("outside a request")
    assert lines(output)[-1]["request_id"] == "-"


def test_request_id_from_a_trusted_proxy_only(make_app):
    sent = {"X-Request-ID": "lb-7f3a9c.42"}
    behind_proxy = make_app(TRUSTED_PROXIES=1).test_client()
    assert behind_proxy.get("/health/live", headers=sent).headers["X-Request-ID"] == "lb-7f3a9c.42"
    odd = behind_proxy.get("/health/live", headers={"X-Request-ID": 'two words"<script>'})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["X-Request-ID"])  # not echoed: a new one
    direct = make_app().test_client()
    assert direct.get("/health/live", headers=sent).headers["X-Request-ID"] != "lb-7f3a9c.42"


def test_emailed_links_are_logged_as_their_route(client, output):
    client.get("/activate/the-activation-token-value")
    client.get("/reset-password/the-reset-token-value")
    text = output.getvalue()
    assert "the-activation-token-value" not in text and "the-reset-token-value" not in text
    assert [line["path"] for line in lines(output)] == ["/activate/<token>", "/reset-password/<token>"]


def test_text_format_is_one_line_with_the_request_id(client):
    buffer = io.StringIO()
    handler = logs.handler("text", buffer)
    logging.getLogger().addHandler(handler)
    try:
        response = client.get("/health/live")
    finally:
        logging.getLogger().removeHandler(handler)
    [line] = buffer.getvalue().splitlines()
    assert f"INFO oidc_provider.access [{response.headers['X-Request-ID']}] GET /health/live 200 " in line


def test_logs_never_contain_a_password_code_token_or_secret(make_app, smtp_server, clock, output):
    """A whole journey with everything logged: sign in (password, code), the
    code exchanged, a refresh, a password reset by its emailed link."""
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, TRUSTED_PROXIES=1)
    user = make_user(app)
    clock.advance(seconds=30)
    rp = RP(app, app.test_client(), clock, user)
    totp_code = user.totp.at(clock.now)

    code = rp.login_code(scope="openid email offline_access")
    tokens = rp.token(code).json
    refreshed = rp.refresh(tokens["refresh_token"]).json
    assert rp.userinfo(refreshed["access_token"]).status_code == 200

    browser = app.test_client()
    assert browser.post("/forgot-password", data={"email": user.email}).status_code == 303
    [link] = [u for u in links(smtp_server.last(user.email)) if "/reset-password/" in u]
    reset_token = urlsplit(link).path.rsplit("/", 1)[1]
    new_password = "a brand new passphrase for logs 99"
    done = browser.post(urlsplit(link).path, data={"password": new_password, "confirm": new_password})
    assert done.status_code == 200
    signed_in = browser.post("/login", data={"email": user.email, "password": new_password})
    assert signed_in.status_code == 302  # the reset took: on to the code
    wrong = browser.post("/login", data={"email": user.email, "password": "a wrong password for logs"})
    assert wrong.status_code == 401

    text = output.getvalue()
    secrets = {
        "password": user.password,
        "new password": new_password,
        "wrong password": "a wrong password for logs",
        "TOTP code": totp_code,
        "authorization code": code,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "ID token": tokens["id_token"],
        "new refresh token": refreshed["refresh_token"],
        "new access token": refreshed["access_token"],
        "client secret": SECRETS["client"],
        "reset link token": reset_token,
        "secret key": app.config["SECRET_KEY"],
    }
    assert len(lines(output)) >= 10  # the journey was logged
    assert "/reset-password/<token>" in text
    assert [name for name, secret in secrets.items() if secret in text] == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOG_FORMAT", "xml", "LOG_FORMAT: expected text or json"),
        ("WEB_WORKERS", "0", "WEB_WORKERS: must be at least 1"),
    ],
)
def test_operating_settings_are_checked_by_name(tmp_path, monkeypatch, name, value, message):
    from oidc_provider import config

    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=message):
        config.load(str(tmp_path))
