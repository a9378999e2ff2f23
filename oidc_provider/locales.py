"""The language people read: which one a page, an email or an SMS speaks,
and the switch on every page.

A page speaks, in this order (`choose`):

1. the saved choice of the person it is for (`User.locale`): the signed-in
   person's, or, between the password and the code, the person signing in;
2. the browser's choice from the switch (the `portal_locale` cookie), for
   people not signed in;
3. `ui_locales` of the authorization request the page belongs to (OpenID
   Connect Core 3.1.2.1), on `/authorize` itself or parked (`tx`);
4. the browser's `Accept-Language`;
5. English.

Emails and SMS are composed and rendered outside any request (the outbox
worker): they speak the recipient account's saved language (`speaking`),
English when it has none. Catalogs live in `translations/` (README: how to
add or update a translation).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, abort, current_app, has_request_context, redirect, request, url_for
from flask_babel import Babel, force_locale, get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import generate_csrf, validate_csrf
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response as BaseResponse
from wtforms.validators import ValidationError

from . import sessions
from .db import db
from .models import LoginTransaction, User
from .security import safe_next

LOCALES = ("en", "nl")  # the languages with a catalog; the first is the default
DEFAULT = LOCALES[0]
NAMES = {"en": "English", "nl": "Nederlands"}  # each in its own language: the switch's labels
COOKIE = "portal_locale"
COOKIE_AGE = 365 * 24 * 3600  # a browser's choice lasts a year (it holds nothing secret)
TX_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a parked request's id (db.new_token): nothing else is looked up

bp = Blueprint("locales", __name__)


def N_(text: str) -> str:  # noqa: N802  (gettext's name for it)
    """Marks `text` for the catalog where it must stay a plain string (a
    constant others compare with); translate it where it is shown: `_(TEXT)`."""
    return text


def supported(value: str | None) -> str | None:
    """`value` as one of LOCALES ("nl-NL" → "nl"), or None."""
    if not value:
        return None
    language = value.strip().replace("_", "-").split("-")[0].lower()
    return language if language in LOCALES else None


def first_supported(values: str | None) -> str | None:
    """The first supported language of a space-separated preference list
    (`ui_locales`: "fr-CA nl en" → "nl")."""
    for value in (values or "").split():
        language = supported(value)
        if language:
            return language
    return None


def choose(
    saved: str | None = None,
    chosen: str | None = None,
    ui_locales: str | None = None,
    accept: Any = None,
) -> str:
    """The language of a page: the person's saved choice, else the browser's
    choice from the switch, else the request's `ui_locales`, else the
    browser's Accept-Language (werkzeug's LanguageAccept), else English."""
    for language in (supported(saved), supported(chosen), first_supported(ui_locales)):
        if language:
            return language
    # in the browser's order of preference, by primary language: "nl-NL" is
    # Dutch even when "en" comes later (werkzeug's best_match prefers exact tags)
    for value, quality in accept or ():
        if quality > 0 and supported(value):
            return supported(value)
    return DEFAULT


def _page_person() -> User | None:
    """Whom the page is for: the signed-in person, or the one signing in
    (password accepted, second step owed). Read only (`held`, not `current`,
    which may commit): choosing a language never writes."""
    sso = sessions.held()
    if sso is not None:
        return sso.user
    pending = sessions.pending()
    return pending.user if pending is not None else None


def _ui_locales() -> str | None:
    """`ui_locales` of the authorization request this page belongs to."""
    if request.args.get("ui_locales"):  # /authorize itself
        return request.args["ui_locales"]
    tx_id = request.args.get("tx")
    if not tx_id:  # the code page: the request the sign-in in progress answers
        item = sessions.pending()
        tx_id = item.tx_id if item is not None else None
    tx = db.session.get(LoginTransaction, tx_id) if isinstance(tx_id, str) and TX_ID.fullmatch(tx_id) else None
    return tx.params.get("ui_locales") if tx is not None else None


def select() -> str | None:
    """Flask-Babel's locale selector: the page's language (`choose`).
    Outside a request (the outbox worker) None: English, unless `speaking`.
    Error pages are rendered with it too, also when the database is away or
    the request's transaction failed: what it cannot read, it goes without."""
    if not has_request_context():
        return None
    try:
        person = _page_person()
        saved, ui_locales = (person.locale if person is not None else None), _ui_locales()
    except SQLAlchemyError:
        db.session.rollback()
        saved, ui_locales = None, request.args.get("ui_locales")
    return choose(saved, request.cookies.get(COOKIE), ui_locales, request.accept_languages)


def current() -> str:
    """The language of this page (or of the message being rendered)."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT


@contextmanager
def speaking(locale: str | None) -> Iterator[None]:
    """Everything translated or formatted inside speaks `locale` (an account's
    saved choice; None: English): emails and SMS, composed and rendered for
    their recipient, whatever page or worker does it."""
    with force_locale(supported(locale) or DEFAULT):
        yield


def recipient_locale(user: User | None) -> str:
    """The language of messages to `user`: their saved choice, else English."""
    return supported(user.locale if user is not None else None) or DEFAULT


# --- the switch ------------------------------------------------------------------------


@bp.get("/language")
def switch() -> BaseResponse:
    """The language switch on every page, a link per language: kept in this
    browser for every page and, for a signed-in person, saved to the account,
    which only a link carrying the session's CSRF token may do; then back to
    the page it was on (a local path only)."""
    language = request.args.get("lang")
    if language not in LOCALES:
        abort(400, _("Choose one of the languages on offer."))
    sso = sessions.current()
    if sso is not None and current_app.config.get("WTF_CSRF_ENABLED", True):
        try:
            validate_csrf(request.args.get("csrf_token"))
        except ValidationError:
            abort(400, _("This link has expired. Choose the language again."))
    if sso is not None:
        sso.user.locale = language
        db.session.commit()
    response = redirect(safe_next(request.args.get("next")) or "/", 303)
    response.set_cookie(
        COOKIE,
        language,
        max_age=COOKIE_AGE,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response


KEPT = ("tx", "method", "page", "sent", "reauth", "new", "replaces")  # what the switch carries back


def _here() -> str:
    """This page's local path, with the parameters of the portal's own pages
    (KEPT, and a `next` that is a local path), for the switch to come back to:
    nothing else a link brought (an app's redirect_uri) is ever repeated."""
    args = [
        (k, v) for k, v in request.args.items(multi=True) if k in KEPT or (k == "next" and safe_next(v))
    ]
    return request.path + (f"?{urlencode(args, safe='/')}" if args else "")


def switch_url(language: str) -> str:
    """The switch's link to `language`, back to this page. For a signed-in
    person it carries the CSRF token (it changes the account); for anyone
    else it only sets this browser's cookie, and the page stays the same for
    every visitor (no per-session value: pages must not tell visitors apart)."""
    try:
        signed_in = sessions.held() is not None
    except SQLAlchemyError:  # the database is away: this page says so, and no account can change
        db.session.rollback()
        signed_in = False
    token = generate_csrf() if signed_in else None
    return url_for("locales.switch", lang=language, next=_here(), csrf_token=token)


def _template_globals() -> dict[str, Any]:
    return {"page_locale": current, "locales": NAMES, "switch_url": switch_url}


def init_app(app: Flask) -> None:
    """Flask-Babel with the page's language (`select`) and the switch."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    Babel(app, locale_selector=select)
    app.context_processor(_template_globals)
    app.register_blueprint(bp)
