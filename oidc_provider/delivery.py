"""Outgoing mail and SMS: the only module that talks to an SMTP server or an
SMS gateway.

Mail is a multipart message (plain text + HTML) rendered from
`templates/email/NAME.txt` and `NAME.html`. SMS is a JSON POST to a generic
HTTP gateway. When MAIL_SERVER (or SMS_GATEWAY_URL) is empty, the local
default, each message is written to OUTBOX_DIR and announced on the console,
so a fresh checkout works with nothing else.

A send is attempted DELIVERY_RETRIES times; a failure is logged and reported
as `False`, never raised: callers keep what they stored (the user can ask for
a new link or code). Attempts follow each other at once, because a browser is
waiting; what retrying later would fix is left to the user's "send again".
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
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, render_template

from .db import now

URL = re.compile(r"https?://[^\s<>\"']+")


class TransientError(Exception):
    """A failure worth another attempt (network, 4xx SMTP reply, 5xx gateway)."""


class PermanentError(Exception):
    """A failure no retry can fix (the server refused the message or recipient)."""


def link(endpoint: str, **values: Any) -> str:
    """The absolute URL of `endpoint`, built from OIDC_ISSUER (never from the
    request's Host header, which a client chooses). Works outside requests."""
    issuer = urlsplit(current_app.config["OIDC_ISSUER"])
    adapter = current_app.url_map.bind(
        issuer.netloc, script_name=issuer.path or "/", url_scheme=issuer.scheme
    )
    return adapter.build(endpoint, values, force_external=True)


# --- mail ---------------------------------------------------------------------------


def send_mail(to: str, subject: str, template: str, **context: Any) -> bool:
    """Send `templates/email/<template>.txt|.html` rendered with `context` to `to`.

    Returns True when the SMTP server accepted it (or it was written to the
    outbox), False after DELIVERY_RETRIES failed attempts (logged)."""
    try:
        message = build_message(to, subject, template, **context)
    except ValueError:  # a line break in an address or subject: header injection
        current_app.logger.error("mail %r to %r not sent: invalid header", template, to)
        return False
    if not current_app.config["MAIL_SERVER"]:
        return _mail_to_outbox(message)
    return _attempt(lambda: _smtp_send(message), f"mail {template!r} to {to}")


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


def _mail_to_outbox(message: EmailMessage) -> bool:
    path = _outbox_file("", ".eml")
    path.write_bytes(message.as_bytes())
    body = message.get_body(("plain",))
    links = URL.findall(body.get_content() if body else "")
    current_app.logger.warning(
        "MAIL_SERVER is empty: mail to %s (%s) written to %s%s",
        message["To"],
        message["Subject"],
        path,
        "".join(f"\n    link: {u}" for u in links),
    )
    return True


# --- SMS ----------------------------------------------------------------------------


def send_sms(to: str, text: str) -> bool:
    """Text `text` to the E.164 number `to` through SMS_GATEWAY_URL.

    Returns True when the gateway accepted it (2xx) or it was written to the
    outbox, False after DELIVERY_RETRIES failed attempts (logged)."""
    if not current_app.config["SMS_GATEWAY_URL"]:
        return _sms_to_outbox(to, text)
    return _attempt(lambda: _gateway_post(to, text), f"SMS to {to}")


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


def _sms_to_outbox(to: str, text: str) -> bool:
    path = _outbox_file("sms", ".txt")
    path.write_text(f"To: {to}\n\n{text}\n")
    current_app.logger.warning("SMS_GATEWAY_URL is empty: SMS to %s written to %s: %s", to, path, text)
    return True


# --- shared -------------------------------------------------------------------------


def _attempt(send: Callable[[], None], what: str) -> bool:
    """Call `send` up to DELIVERY_RETRIES times; True once it succeeds."""
    attempts = max(1, current_app.config["DELIVERY_RETRIES"])
    for attempt in range(1, attempts + 1):
        try:
            send()
            return True
        except PermanentError as exc:
            current_app.logger.error("%s failed for good (attempt %d): %s", what, attempt, exc)
            return False
        except TransientError as exc:
            current_app.logger.warning("%s failed (attempt %d of %d): %s", what, attempt, attempts, exc)
    current_app.logger.error("%s not delivered after %d attempts", what, attempts)
    return False


def _outbox_file(folder: str, suffix: str) -> Path:
    """A new, unique, empty file in OUTBOX_DIR[/folder], named by time so `ls`
    sorts it. Folders 0700 and files 0600: messages carry links that sign in."""
    outbox = Path(current_app.config["OUTBOX_DIR"])
    for directory in (outbox, outbox / folder):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = outbox / folder / f"{now():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}{suffix}"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path
