"""A real SMTP server (aiosmtpd) on a free loopback port, for tests that read
the mail a user would receive: `smtp_server` and `mail_app` fixtures."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USERNAME, PASSWORD = "portal", "smtp-test-password"
REFUSED_DOMAIN = "@refused.test"  # the server answers 550 for these recipients
REFUSED_PREFIX = "refused-"  # and for these (addresses a form accepts: refused-ann@example.com)
LINK = re.compile(r"https?://[^\s<>\"']+")


class Handler:
    """The aiosmtpd handler: what the server answers, and where messages go.
    (Apart from `Inbox`, whose reading sends queued mail: aiosmtpd inspects
    its handler's attributes on every connection.)"""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:  # aiosmtpd hook
        if address.endswith(REFUSED_DOMAIN) or address.startswith(REFUSED_PREFIX):
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.inbox.arrived:
            self.inbox.received.append(message)
            self.inbox.arrived.notify_all()
        return "250 Message accepted for delivery"


class Inbox:
    """What the server received: one `EmailMessage` per message, in order.

    Reading `messages`, `to` or `last` first calls `before_reading` (the apps'
    outbox workers send what is due, conftest.deliver); `received` is what
    arrived so far, without sending anything."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.logins: list[str] = []
        self.port = 0
        self.before_reading: list = []
        self.arrived = threading.Condition()

    def wait_for(self, count: int, timeout: float = 10) -> list[EmailMessage]:
        """What arrived, once `count` messages have (or `timeout` seconds passed):
        for mail another thread or process sends."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    @property
    def messages(self) -> list[EmailMessage]:
        for deliver in self.before_reading:
            deliver()
        return self.received

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USERNAME.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.logins.append(USERNAME)
        return AuthResult(success=ok)

    def to(self, address: str) -> list[EmailMessage]:
        """The messages sent to `address`."""
        return [m for m in self.messages if m["To"] == address]

    def last(self, address: str) -> EmailMessage:
        """The latest message to `address` (fails the test when there is none)."""
        received = self.to(address)
        assert received, f"no mail to {address}; got {[m['To'] for m in self.messages]}"
        return received[-1]


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()


def links(message: EmailMessage) -> list[str]:
    """The URLs in the plain-text part, as a user would click them."""
    return LINK.findall(text_of(message))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving() -> Iterator[Inbox]:
    """An SMTP server on a free 127.0.0.1 port until the block ends; AUTH
    LOGIN/PLAIN with USERNAME/PASSWORD is accepted but not required."""
    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(
        Handler(inbox),
        hostname="127.0.0.1",
        port=inbox.port,
        authenticator=inbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[Inbox]:
    """A fresh SMTP server for one test."""
    with serving() as inbox:
        yield inbox


@pytest.fixture
def mail_app(make_app, smtp_server):
    """An app that sends its mail to `smtp_server`."""
    return make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
