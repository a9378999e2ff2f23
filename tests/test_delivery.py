"""Mail over real SMTP (aiosmtpd) and the outbox; SMS over a real HTTP gateway
and the outbox."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mailserver import PASSWORD, USERNAME, free_port, html_of, links, text_of

from oidc_provider import delivery

ACTIVATION = {"name": "Ann Example", "link": "https://op.example.test/activate/abc", "valid_for": "48 hours"}


def test_mail_is_sent_over_smtp_as_plain_text_and_html(mail_app, smtp_server):
    with mail_app.app_context():
        assert delivery.send_mail("ann@example.com", "Activate your account", "activation", **ACTIVATION)
    message = smtp_server.last("ann@example.com")
    assert message["Subject"] == "Activate your account"
    assert message["From"] == "Login Portal <no-reply@localhost>"
    assert message["Message-ID"] and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    assert "Hello Ann Example" in text_of(message) and "Login Portal" in text_of(message)
    assert links(message) == [ACTIVATION["link"]]
    assert f'href="{ACTIVATION["link"]}"' in html_of(message)


def test_html_part_escapes_what_the_user_typed(mail_app, smtp_server):
    with mail_app.app_context():
        delivery.send_mail("ann@example.com", "Hi", "activation", **{**ACTIVATION, "name": "<b>Ann</b>"})
    message = smtp_server.last("ann@example.com")
    assert "&lt;b&gt;Ann&lt;/b&gt;" in html_of(message)
    assert "Hello <b>Ann</b>" in text_of(message)


def test_smtp_login_when_a_username_is_set(make_app, smtp_server):
    app = make_app(
        MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, MAIL_USERNAME=USERNAME, MAIL_PASSWORD=PASSWORD
    )
    with app.app_context():
        assert delivery.send_mail("ann@example.com", "Hi", "activation", **ACTIVATION)
    assert smtp_server.logins == [USERNAME]


def test_unreachable_smtp_server_is_retried_then_reported(make_app, caplog):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), DELIVERY_RETRIES=3)
    with app.app_context():
        assert delivery.send_mail("ann@example.com", "Hi", "activation", **ACTIVATION) is False
    attempts = [r for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert len(attempts) == 3
    assert any(
        r.levelno == logging.ERROR and "not delivered after 3" in r.getMessage() for r in caplog.records
    )


def test_refused_recipient_is_not_retried(mail_app, smtp_server, caplog):
    with mail_app.app_context():
        assert delivery.send_mail("nobody@refused.test", "Hi", "activation", **ACTIVATION) is False
    assert smtp_server.messages == []
    assert [r.levelno for r in caplog.records if "nobody@refused.test" in r.getMessage()] == [logging.ERROR]


def test_line_break_in_an_address_is_refused_not_injected(mail_app, smtp_server):
    with mail_app.app_context():
        assert not delivery.send_mail("a@example.com\nBcc: b@example.com", "Hi", "activation", **ACTIVATION)
    assert smtp_server.messages == []


def test_without_mail_server_mail_goes_to_the_outbox_and_its_link_to_the_console(app, caplog):
    with app.app_context():
        assert delivery.send_mail("ann@example.com", "Activate", "activation", **ACTIVATION)
    files = list(Path(app.config["OUTBOX_DIR"]).glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message["To"] == "ann@example.com" and links(message) == [ACTIVATION["link"]]
    logged = [
        r for r in caplog.records if r.levelno == logging.WARNING and ACTIVATION["link"] in r.getMessage()
    ]
    assert logged and str(files[0]) in logged[0].getMessage()


def test_links_are_built_from_the_issuer_not_the_request(make_app):
    app = make_app(OIDC_ISSUER="https://login.example.com/sso")
    with app.test_request_context("/", base_url="http://evil.example"):
        assert delivery.link("endpoints.jwks") == "https://login.example.com/sso/jwks.json"
    with app.app_context():  # the command line has no request
        assert delivery.link("endpoints.discovery").startswith("https://login.example.com/sso/.well-known/")


# --- SMS ----------------------------------------------------------------------------


class Gateway(ThreadingHTTPServer):
    """An SMS gateway on loopback that answers `status` and records requests."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), GatewayHandler)
        self.status = 202
        self.requests: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/send"


class GatewayHandler(BaseHTTPRequestHandler):
    server: Gateway

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers), body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def gateway():
    server = Gateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def sms_app(make_app, gateway):
    return make_app(SMS_GATEWAY_URL=gateway.url, SMS_GATEWAY_TOKEN="gw-token", DELIVERY_RETRIES=3)


def test_sms_is_posted_as_json_with_the_bearer_token(sms_app, gateway):
    with sms_app.app_context():
        assert delivery.send_sms("+31612345678", "Your code is 123456")
    [(headers, body)] = gateway.requests
    assert headers["Authorization"] == "Bearer gw-token"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"to": "+31612345678", "text": "Your code is 123456"}


def test_gateway_error_is_retried_then_reported(sms_app, gateway, caplog):
    gateway.status = 500
    with sms_app.app_context():
        assert delivery.send_sms("+31612345678", "Your code is 123456") is False
    assert len(gateway.requests) == 3
    assert any(r.levelno == logging.ERROR and "not delivered" in r.getMessage() for r in caplog.records)


def test_gateway_refusal_is_not_retried(sms_app, gateway):
    gateway.status = 400
    with sms_app.app_context():
        assert delivery.send_sms("+31612345678", "Your code is 123456") is False
    assert len(gateway.requests) == 1


def test_unreachable_gateway_is_reported(make_app):
    app = make_app(SMS_GATEWAY_URL=f"http://127.0.0.1:{free_port()}/send", DELIVERY_RETRIES=2)
    with app.app_context():
        assert delivery.send_sms("+31612345678", "Your code is 123456") is False


def test_without_gateway_sms_goes_to_the_outbox_and_the_console(app, caplog):
    with app.app_context():
        assert delivery.send_sms("+31612345678", "Your code is 123456")
    [file] = Path(app.config["OUTBOX_DIR"], "sms").glob("*.txt")
    assert "+31612345678" in file.read_text() and "Your code is 123456" in file.read_text()
    assert any("Your code is 123456" in r.getMessage() for r in caplog.records)
