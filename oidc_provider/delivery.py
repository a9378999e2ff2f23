"""Outgoing mail and SMS: the only module that talks to an SMTP server or an
SMS gateway.

Mail is a multipart message (plain text + HTML) rendered from
`templates/email/NAME.txt` and `NAME.html`. SMS is a JSON POST to a generic
HTTP gateway. When MAIL_SERVER (or SMS_GATEWAY_URL) is empty, the local
default, each message is written to OUTBOX_DIR and announced on the console,
so a fresh checkout works with nothing else.

`send_mail` and `send_sms` never send: they queue the message in the outbox
(outbox.py) and return its id; a worker renders and sends it, retrying with
backoff (transient failures: network, 4xx SMTP replies, 5xx gateway answers)
or giving up at once (permanent: the server refused the message or the
recipient). A mail may also be composed by the worker (`send_composed`), so
that a request does the same work whatever the address it was given.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, render_template
from flask_babel import force_locale

from . import outbox
from .db import db, now
from .outbox import PermanentError, TransientError

DEFAULT_LOCALE = "en"  # mail to no account, or to one without a saved language
URL = re.compile(r"https?://[^\s<>\"']+")
__all__ = ["PermanentError", "TransientError", "link", "send_composed", "send_mail", "send_sms"]


def link(endpoint: str, **values: Any) -> str:
    """The absolute URL of `endpoint`, built from OIDC_ISSUER (never from the
    request's Host header, which a client chooses). Works outside requests."""
    issuer = urlsplit(current_app.config["OIDC_ISSUER"])
    adapter = current_app.url_map.bind(
        issuer.netloc, script_name=issuer.path or "/", url_scheme=issuer.scheme
    )
    return adapter.build(endpoint, values, force_external=True)


# --- mail ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    """An email to render and send: `templates/email/<template>.txt|.html` with `context`."""

    to: str
    subject: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    user_id: int | None = None  # whose account it concerns (kept as the message's record)
    locale: str | None = None  # the recipient's language (locales.py); None: English


def send_mail(
    to: str,
    subject: str,
    template: str,
    *,
    user_id: int | None = None,
    expires_at: datetime | None = None,
    locale: str | None = None,
    **context: Any,
) -> int | None:
    """Queue `templates/email/<template>` rendered with `context` for `to`, and
    commit (with whatever the caller has pending). Returns the outbox id, or
    None when no mail can be sent to that address at all (a line break in a
    header would inject headers). `expires_at`: not worth sending after.
    `locale`: the recipient's language, which the worker renders it in."""
    return queue_mail(Mail(to, subject, template, context, user_id, locale), expires_at=expires_at)


def queue_mail(mail: Mail, *, expires_at: datetime | None = None) -> int | None:
    """`send_mail` for a `Mail`."""
    if _header_injection(mail):
        current_app.logger.error("mail %r to %r not queued: a line break in a header", mail.template, mail.to)
        return None
    message_id = outbox.enqueue(
        outbox.MAIL, asdict(mail), label=mail.template, user_id=mail.user_id, expires_at=expires_at
    )
    db.session.commit()
    return message_id


def _header_injection(mail: Mail) -> bool:
    return any(c in value for value in (mail.to, mail.subject) for c in "\r\n")


# A composer turns arguments into the mail to send, or None, in the worker:
# it may look up accounts and write rows (tokens, the audit log); it runs once.
Composer = Callable[..., "Mail | None"]
_COMPOSERS: dict[str, Composer] = {}


def composer(name: str) -> Callable[[Composer], Composer]:
    """Register a composer for `send_composed`."""

    def register(function: Composer) -> Composer:
        _COMPOSERS[name] = function
        return function

    return register


def send_composed(name: str, **arguments: Any) -> int:
    """Queue a mail that the composer `name` will write in the worker from
    `arguments` (JSON values); commit. The request's work is the same whether
    or not a mail results: no answer time tells what the composer found."""
    message_id = outbox.enqueue(outbox.MAIL, {"compose": name, "arguments": arguments}, label=name)
    db.session.commit()
    return message_id


@outbox.preparer(outbox.MAIL)
def _compose(payload: outbox.Payload) -> outbox.Payload | None:
    if "compose" not in payload:
        return payload
    mail = _COMPOSERS[payload["compose"]](**payload["arguments"])
    if mail is None or _header_injection(mail):
        return None
    return {**asdict(mail), "label": mail.template}


@outbox.sender(outbox.MAIL)
def _deliver_mail(payload: outbox.Payload) -> None:
    """One attempt at a queued mail: render it now, in the recipient's
    language, then SMTP or the outbox folder."""
    with force_locale(payload.get("locale") or DEFAULT_LOCALE):
        message = build_message(payload["to"], payload["subject"], payload["template"], **payload["context"])
    if not current_app.config["MAIL_SERVER"]:
        _mail_to_folder(message)
        return
    _smtp_send(message)


def build_message(to: str, subject: str, template: str, **context: Any) -> EmailMessage:
    """The multipart/alternative message, ready to send."""
    context.setdefault("portal_name", current_app.config["PORTAL_NAME"])
    context.setdefault("subject", subject)
    message = EmailMessage()
    sender = current_app.config["MAIL_FROM"]
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(now().replace(tzinfo=UTC))
    message["Message-ID"] = make_msgid(domain=_domain(sender))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message.set_content(render_template(f"email/{template}.txt", **context))
    message.add_alternative(render_template(f"email/{template}.html", **context), subtype="html")
    return message


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


def _smtp_send(message: EmailMessage) -> None:
    """One attempt: connect, (STARTTLS), (log in), send, quit."""
    cfg = current_app.config
    try:
        with _smtp_connect(cfg) as smtp:
            if cfg["MAIL_USE_TLS"] and not cfg["MAIL_USE_SSL"]:
                smtp.starttls(context=ssl.create_default_context())
            if cfg["MAIL_USERNAME"]:
                smtp.login(cfg["MAIL_USERNAME"], cfg["MAIL_PASSWORD"])
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        raise (TransientError if 400 <= exc.smtp_code < 500 else PermanentError)(str(exc)) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise (TransientError if all(400 <= c < 500 for c in codes) else PermanentError)(str(exc)) from exc
    except (OSError, smtplib.SMTPException) as exc:  # refused, timed out, dropped
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc


def _smtp_connect(cfg: dict[str, Any]) -> smtplib.SMTP:
    host, port, timeout = cfg["MAIL_SERVER"], cfg["MAIL_PORT"], cfg["MAIL_TIMEOUT"]
    if cfg["MAIL_USE_SSL"]:
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    return smtplib.SMTP(host, port, timeout=timeout)


def _mail_to_folder(message: EmailMessage) -> None:
    path = _folder_file("", ".eml")
    _write_private(path, message.as_bytes())
    body = message.get_body(("plain",))
    links = URL.findall(body.get_content() if body else "")
    current_app.logger.warning(
        "MAIL_SERVER is empty: mail to %s (%s) written to %s%s",
        message["To"],
        message["Subject"],
        path,
        "".join(f"\n    link: {u}" for u in links),
    )


# --- SMS ----------------------------------------------------------------------------


def send_sms(to: str, text: str, *, user_id: int | None = None, expires_at: datetime | None = None) -> int:
    """Queue `text` for the E.164 number `to` and commit (with whatever the
    caller has pending). Returns the outbox id. `expires_at`: not worth sending after."""
    message_id = outbox.enqueue(
        outbox.SMS, {"to": to, "text": text}, label="sms", user_id=user_id, expires_at=expires_at
    )
    db.session.commit()
    return message_id


@outbox.sender(outbox.SMS)
def _deliver_sms(payload: outbox.Payload) -> None:
    """One attempt at a queued SMS: the gateway, or the outbox folder."""
    if not current_app.config["SMS_GATEWAY_URL"]:
        _sms_to_folder(payload["to"], payload["text"])
        return
    _gateway_post(payload["to"], payload["text"])


def _gateway_post(to: str, text: str) -> None:
    """One attempt: POST {"to", "text"} as JSON with the bearer token."""
    cfg = current_app.config
    request = urllib.request.Request(  # noqa: S310  (the URL is the admin's setting)
        cfg["SMS_GATEWAY_URL"],
        data=json.dumps({"to": to, "text": text}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {cfg['SMS_GATEWAY_TOKEN']}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=cfg["SMS_GATEWAY_TIMEOUT"]) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        retry = exc.code >= 500 or exc.code in (408, 429)
        raise (TransientError if retry else PermanentError)(f"gateway answered {exc.code}") from exc
    except (OSError, ValueError) as exc:  # unreachable, timed out, bad URL
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc


def _sms_to_folder(to: str, text: str) -> None:
    path = _folder_file("sms", ".txt")
    _write_private(path, f"To: {to}\n\n{text}\n".encode())
    current_app.logger.warning("SMS_GATEWAY_URL is empty: SMS to %s written to %s: %s", to, path, text)


# --- the outbox folder (local use) -----------------------------------------------------


def _folder_file(folder: str, suffix: str) -> Path:
    """A new, unique file in OUTBOX_DIR[/folder], named by time so `ls` sorts it.
    Folders it creates are 0700 (the messages hold links and codes); one that
    exists keeps the mode its owner gave it."""
    top = Path(current_app.config["OUTBOX_DIR"])
    directory = top / folder
    for path in (top, directory):
        if not path.exists():
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory / f"{now():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}{suffix}"


def _write_private(path: Path, data: bytes) -> None:
    """Write a new file readable by its owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
