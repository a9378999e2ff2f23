"""Mail over real SMTP (aiosmtpd) and the outbox folder; SMS over a real HTTP
gateway and the outbox folder. `send_mail`/`send_sms` only queue; `deliver`
runs the outbox worker as a serving process's worker thread does."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import deliver
from mailserver import PASSWORD, USERNAME, free_port, html_of, links, text_of

from oidc_provider import delivery
from oidc_provider.db import db
from oidc_provider.models import AuditEvent, OutboxMessage

ACTIVATION = {"name": "Ann Example", "link": "https://op.example.test/activate/abc", "valid_for": "48 hours"}


def message_row(app, message_id: int) -> OutboxMessage:
    with app.app_context():
        row = db.session.get(OutboxMessage, message_id)
        db.session.expunge(row)
        return row


def test_mail_is_sent_over_smtp_as_plain_text_and_html(mail_app, smtp_server):
    with mail_app.app_context():
        message_id = delivery.send_mail(
            "ann@example.com", "Activate your account", "activation", **ACTIVATION
        )
    assert isinstance(message_id, int) and smtp_server.received == []  # queued, not sent
    message = smtp_server.last("ann@example.com")
    row = message_row(mail_app, message_id)
    assert (row.status, row.attempts, row.payload, row.last_error) == ("sent", 1, None, None)
    assert row.sent_at is not None and row.label == "activation"
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
    assert [m["To"] for m in smtp_server.messages] == ["ann@example.com"]
    assert smtp_server.logins == [USERNAME]


def test_unreachable_smtp_server_is_retried_later_with_backoff_then_reported(make_app, clock, caplog):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), DELIVERY_RETRIES=3, OUTBOX_BACKOFF_BASE=20)
    with app.app_context():
        message_id = delivery.send_mail("ann@example.com", "Hi", "activation", **ACTIVATION)
    for attempt, wait in ((1, 20), (2, 40)):
        [tried] = deliver(app)
        assert (tried.status, "ConnectionRefusedError" in tried.error) == ("pending", True)
        row = message_row(app, message_id)
        # the next attempt comes after the backoff, doubling, with jitter (half to all of it)
        later = row.next_attempt_at - clock.now.replace(tzinfo=None)
        assert row.attempts == attempt and timedelta(seconds=wait / 2) <= later <= timedelta(seconds=wait)
        assert deliver(app) == []  # not before
        clock.advance(seconds=wait)
    [tried] = deliver(app)
    row = message_row(app, message_id)
    assert (tried.status, row.status, row.attempts, row.payload) == ("failed", "failed", 3, None)
    assert "ConnectionRefusedError" in row.last_error and row.failed_at is not None
    with app.app_context():
        [failed] = db.session.scalars(db.select(AuditEvent).filter_by(event="mail_failed")).all()
        assert failed.outcome == "failed" and failed.details["template"] == "activation"
    assert any(
        r.levelno == logging.ERROR and "failed for good at attempt 3" in r.getMessage()
        for r in caplog.records
    )


def test_refused_recipient_is_not_retried(mail_app, smtp_server, caplog):
    with mail_app.app_context():
        message_id = delivery.send_mail("nobody@refused.test", "Hi", "activation", **ACTIVATION)
    [tried] = deliver(mail_app)
    assert tried.status == "failed" and "550" in tried.error
    assert smtp_server.messages == []
    row = message_row(mail_app, message_id)
    assert (row.status, row.attempts, row.payload) == ("failed", 1, None)
    assert [r.levelno for r in caplog.records if "failed for good" in r.getMessage()] == [logging.ERROR]


def test_line_break_in_an_address_is_refused_not_injected(mail_app, smtp_server):
    with mail_app.app_context():
        assert (
            delivery.send_mail("a@example.com\nBcc: b@example.com", "Hi", "activation", **ACTIVATION) is None
        )
        assert db.session.query(OutboxMessage).count() == 0
    assert smtp_server.messages == []


def test_without_mail_server_mail_goes_to_the_outbox_and_its_link_to_the_console(app, caplog):
    with app.app_context():
        assert delivery.send_mail("ann@example.com", "Activate", "activation", **ACTIVATION)
    assert list(Path(app.config["OUTBOX_DIR"]).glob("*.eml")) == []  # queued: the worker writes it
    deliver(app)
    files = list(Path(app.config["OUTBOX_DIR"]).glob("*.eml"))
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600  # it holds a link that opens the account
    assert Path(app.config["OUTBOX_DIR"]).stat().st_mode & 0o777 == 0o700
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
    assert gateway.requests == []  # queued
    [tried] = deliver(sms_app)
    assert tried.status == "sent"
    [(headers, body)] = gateway.requests
    assert headers["Authorization"] == "Bearer gw-token"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"to": "+31612345678", "text": "Your code is 123456"}


def test_gateway_error_is_retried_later_then_reported(sms_app, gateway, clock, caplog):
    gateway.status = 500
    with sms_app.app_context():
        message_id = delivery.send_sms("+31612345678", "Your code is 123456")
    for _ in range(3):
        deliver(sms_app)
        clock.advance(seconds=sms_app.config["OUTBOX_BACKOFF_MAX"])
    assert len(gateway.requests) == 3
    assert message_row(sms_app, message_id).status == "failed"
    assert any(r.levelno == logging.ERROR and "failed for good" in r.getMessage() for r in caplog.records)


def test_gateway_refusal_is_not_retried(sms_app, gateway, clock):
    gateway.status = 400
    with sms_app.app_context():
        message_id = delivery.send_sms("+31612345678", "Your code is 123456")
    deliver(sms_app)
    clock.advance(hours=2)
    deliver(sms_app)
    assert len(gateway.requests) == 1
    assert message_row(sms_app, message_id).last_error == "gateway answered 400"


def test_unreachable_gateway_is_retried(make_app):
    app = make_app(SMS_GATEWAY_URL=f"http://127.0.0.1:{free_port()}/send", DELIVERY_RETRIES=2)
    with app.app_context():
        message_id = delivery.send_sms("+31612345678", "Your code is 123456")
    [tried] = deliver(app)
    assert tried.status == "pending" and "Connection refused" in tried.error
    assert message_row(app, message_id).payload is not None  # kept for the retry


def test_without_gateway_sms_goes_to_the_outbox_and_the_console(app, caplog):
    with app.app_context():
        assert delivery.send_sms("+31612345678", "Your code is 123456")
    deliver(app)
    [file] = Path(app.config["OUTBOX_DIR"], "sms").glob("*.txt")
    assert "+31612345678" in file.read_text() and "Your code is 123456" in file.read_text()
    assert any("Your code is 123456" in r.getMessage() for r in caplog.records)
