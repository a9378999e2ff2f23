"""What every response and form shares: CSRF, rate limits, security headers,
the client's address behind proxies, and error pages that never show a trace."""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from flask import Flask, Response, abort, current_app, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from limits import parse_many
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from .clients import all_clients

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
    "form-action 'self' {apps}; frame-ancestors 'none'; base-uri 'none'"
)


class RowId(IntegerConverter):
    """`<int:…>` in every URL: a row id, at most PostgreSQL's INTEGER, so a
    larger number is no page (404) rather than a database error."""

    MAX = 2**31 - 1

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", self.MAX)
        super().__init__(map, *args, **kwargs)


def row_id(value: str | None) -> int | None:
    """A row id from a form or query string, read as `RowId` reads one from a
    path: ASCII digits up to INTEGER's largest, else None. (Python's int()
    raises ValueError beyond 4300 digits, and accepts "٣".)"""
    if not value or not (value.isascii() and value.isdigit()) or len(value) > len(str(RowId.MAX)):
        return None
    number = int(value)
    return number if number <= RowId.MAX else None


def init_app(app: Flask) -> None:
    """Before any blueprint: the rules they add use these converters."""
    if app.config.get("TRUSTED_PROXIES"):
        n = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.url_map.converters["int"] = RowId
    app.before_request(_refuse_nul)
    csrf.init_app(app)
    limiter.init_app(app)
    app.after_request(_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OAuth2Error, _oauth_error)


def _refuse_nul() -> None:
    """No field or parameter of this service holds a NUL character, and
    PostgreSQL can neither store nor compare one: refused at the door. (A path
    with one matches no page, or a token that is only ever hashed: a 404.)"""
    parts = [*request.headers.values(), *request.cookies.values()]
    for values in (request.args, request.form):
        for name, value in values.items(multi=True):
            parts += (name, value)
    if any("\x00" in part for part in parts):
        abort(400, "The request contains a NUL character, which no field accepts.")


def _csp() -> str:
    """CSP with form-action naming the registered apps' origins: browsers apply
    it to the redirects after a form too, and a sign-in form ends at the app."""
    csp = current_app.extensions.get("csp")
    if csp is None:  # once per process: clients.yaml is read at start-up
        uris = [u for c in all_clients().values() for u in (*c.redirect_uris, *c.post_logout_redirect_uris)]
        apps = sorted({"{0.scheme}://{0.netloc}".format(urlsplit(u)) for u in uris})
        csp = current_app.extensions["csp"] = CSP.format(apps=" ".join(apps))
    return csp


def security_headers(secure: bool) -> list[tuple[str, str]]:
    """The headers every response carries unless its view set its own."""
    headers = [
        ("Content-Security-Policy", _csp()),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        # same-origin, not no-referrer: over https Flask-WTF refuses a form without a
        # same-origin Referer; other sites (the apps) are still sent none.
        ("Referrer-Policy", "same-origin"),
        # Pages show secrets and personal data (the authenticator's key, My details):
        # never kept in a cache. Files and discovery set their own caching.
        ("Cache-Control", "no-store"),
    ]
    if secure:
        headers.append(("Strict-Transport-Security", "max-age=31536000"))
    return headers


def _headers(response: Response) -> Response:
    for name, value in security_headers(request.is_secure):
        response.headers.setdefault(name, value)
    return response


def wants_json() -> bool:
    """RP-facing endpoints answer errors in JSON (even a wrong method, which
    matches no rule); browsers get a page."""
    if request.blueprint == "endpoints" or request.accept_mimetypes.best == "application/json":
        return True
    adapter = current_app.url_map.bind("")
    return any(
        rule.endpoint.startswith("endpoints.")
        for rule in adapter.map.iter_rules()
        if rule.rule == request.path
    )


# In the portal's own words, for errors raised without a description of ours
# (werkzeug's defaults speak of "the server" and "the URL").
PAGES = {  # lazy: read in the page's language
    404: (
        _l("We can't find that page"),
        _l("The address may be mistyped, or the page has moved."),
        _l("Check the address, or start again from the portal home."),
    ),
    405: (_l("That did not work"), _l("This page cannot be used that way."), _l("Go back and try again.")),
    413: (_l("That was too much"), _l("What was sent is larger than any form here accepts."), None),
    500: (
        _l("Something went wrong on our side"),
        _l("Nothing you did caused this. Please try again in a moment."),
        None,
    ),
}


def _http_error(exc: HTTPException) -> tuple[Response | str, int]:
    code = exc.code or 500
    if wants_json():
        return jsonify(
            error="invalid_request" if code < 500 else "server_error", error_description=exc.description
        ), code
    if code in PAGES and exc.description == type(exc).description:
        title, message, hint = PAGES[code]
        return render_template("error.html", title=title, message=message, hint=hint), code
    return render_template("error.html", title=exc.name, message=exc.description), code


def _oauth_error(error: OAuth2Error) -> tuple[Response | str, int]:
    """An Authlib refusal raised outside its own error handling (a request over
    plain http is refused while it is being read): the spec's error, not a 500."""
    description = error.get_error_description()
    if wants_json():
        return jsonify(error=error.error, error_description=description), error.status_code
    return render_template(
        "error.html", title=_("This request cannot be answered"), message=description
    ), error.status_code


def client_ip() -> str:
    return request.remote_addr or "unknown"


def spend(limits: str, scope: str) -> bool:
    """Count one against `limits` (Flask-Limiter's syntax) for this client IP,
    in the limiter's storage (shared by every instance): for a limit that only
    some outcomes of a view spend, decided inside the view. False when the
    budget is spent (nothing is counted then)."""
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return True
    items = _parsed(limits)
    key = client_ip()
    try:
        strategy = limiter.limiter
        if not all(strategy.test(item, scope, key) for item in items):
            return False
        for item in items:
            strategy.hit(item, scope, key)
    except Exception as error:  # the storage is away: serve the request, say so in one line
        current_app.logger.warning(
            "rate limit %s: storage unreachable (%s: %s), not counted",
            scope,
            type(error).__name__,
            (str(error).strip().splitlines() or [""])[0][:200],
        )
    return True


@lru_cache(maxsize=32)
def _parsed(limits: str) -> tuple[Any, ...]:
    return tuple(parse_many(limits))


def within(limits: str, scope: str, address: str) -> bool:
    """Whether a view under the shared limit `scope` (Flask-Limiter's, counted
    per client IP) would be let through now, for a caller answering it below
    Flask (fastpath.py). Counts nothing. The storage away: False, and the view
    decides with the limiter's own fallback."""
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return True
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX") or ""
    identifiers = [prefix, address or "127.0.0.1", scope] if prefix else [address or "127.0.0.1", scope]
    try:
        return all(limiter.limiter.test(item, *identifiers) for item in _parsed(limits))
    except Exception:
        return False


def safe_next(url: str | None) -> str | None:
    """A local path to return to, or None: never an open redirect. Control
    characters and spaces are refused too: browsers drop tabs and line breaks
    from a link, so "/<TAB>/evil.example" would lead to //evil.example."""
    if not url or not url.startswith("/") or url.startswith(("//", "/\\")) or "\\" in url:
        return None
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return None
    return url
