"""The common case of the apps' most frequent calls, answered below Flask.

Discovery, the JWKS, userinfo, token introspection and the token endpoint are
what relying parties' servers call most, and /authorize from a browser already
signed in is what every app after the first costs. Nearly every call is the
plain case: a valid bearer token, a client that authenticates with its secret,
a code or refresh token redeemed once, a signed-in browser asking for a code
that needs no page. Flask's request handling costs more than the work these
need, so this WSGI layer answers exactly those cases itself, with the same
body and headers, the same access log line, request id and metrics. At /token
Authlib's own grants still decide and issue, and at /authorize the view's own
`decide` and `issue`, from a request read here. Anything else -- a missing,
unknown, expired or revoked token, a wrong secret (which the rate limit must
count), any client over that limit, a token asking for claims that need a
database look-up of their own, a refused grant, a request that needs a page, a
database that does not answer -- falls through to the Flask views, which stay
the one place that decides errors (tests/test_fastpath.py checks that both
answer the same).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2 import OAuth2Error
from flask import Flask, current_app
from itsdangerous import BadData
from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.http import parse_cookie

from . import authorize as authorize_view
from . import endpoints, keys, logs, metrics, oauth, sessions, worker
from .clients import query_client
from .db import db, now, token_hash
from .models import Token, User
from .security import security_headers, within

TOKEN = re.compile(r"[A-Za-z0-9_\-]{20,128}")  # the tokens this provider issues (db.new_token)
MAX_BODY = 4096  # an introspection request of ours is far smaller; larger goes to Flask
NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]

# One statement for each, written once: a live access token (not revoked, not
# expired) and its person (activated, not disabled). The checks are in the SQL,
# so only the columns an answer shows come back.
_LIVE = (
    'FROM token t JOIN "user" u ON u.id = t.user_id WHERE t.access_token_hash = :digest '
    "AND t.revoked_at IS NULL AND t.expires_at > :at AND u.activated_at IS NOT NULL AND u.disabled_at IS NULL"
)
USERINFO = (
    text(f"SELECT t.scope, t.claims, u.sub, u.name, u.email {_LIVE}")
    .bindparams(bindparam("digest"), bindparam("at", type_=DateTime()))
    .columns(Token.scope, Token.claims, User.sub, User.name, User.email)
)
INTROSPECTION = (
    text(f"SELECT t.client_id, t.scope, t.expires_at, t.issued_at, u.sub {_LIVE}")
    .bindparams(bindparam("digest"), bindparam("at", type_=DateTime()))
    .columns(Token.client_id, Token.scope, Token.expires_at, Token.issued_at, User.sub)
)


@dataclass(frozen=True)
class Answer:
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    endpoint: str  # the Flask endpoint it stands for (logs, metrics)


Handler = Callable[[dict[str, Any]], "Answer | None"]


def _jsonify(data: dict[str, Any]) -> bytes:
    """As Flask's jsonify writes it outside debug mode (the userinfo view)."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def _authlib_json(data: dict[str, Any]) -> bytes:
    """As Authlib's Flask integration writes an endpoint's answer (introspection):
    `flask.json.dumps`, keys sorted, default separators."""
    return json.dumps(data, sort_keys=True).encode()


def _live_access_token(statement: Any, token: str) -> Any:
    """`statement`'s row for a live access token of an active person, or None."""
    with db.engine.connect() as connection:
        return connection.execute(statement, {"digest": token_hash(token), "at": now()}).first()


def userinfo(environ: dict[str, Any]) -> Answer | None:
    """A bearer token in the Authorization header, granted `openid`, whose
    claims come from the person's row alone (no phone, no `claims` request)."""
    if environ["REQUEST_METHOD"] not in ("GET", "POST") or environ.get("CONTENT_LENGTH") not in (
        None,
        "",
        "0",
    ):
        return None
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not TOKEN.fullmatch(value):
        return None
    row = _live_access_token(USERINFO, value)
    if row is None or row.claims:
        return None
    scope = row.scope.split()
    if "openid" not in scope or "phone" in scope:
        return None
    values = oauth.claim_values(row.name, row.email, True, None)  # activated: checked in the SQL
    body = _jsonify(oauth.scope_claims(row.sub, row.scope, values))
    return Answer("200 OK", [("Content-Type", "application/json"), *NO_STORE], body, "endpoints.userinfo")


def _client(environ: dict[str, Any]) -> Any:
    """The client of a `client_secret_basic` Authorization header, if its secret is right."""
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client = query_client(client_id)
    if client is None or client.token_endpoint_auth_method != "client_secret_basic":
        return None
    return client if client.check_client_secret(secret) else None


def _form(environ: dict[str, Any]) -> dict[str, str] | None:
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= MAX_BODY:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = _Replay(body)  # a fall-through reads it again
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    form = dict(pairs)
    return form if len(form) == len(pairs) else None


def _url(environ: dict[str, Any], path: str) -> str:
    """The request's URL as Flask would give it to Authlib (which refuses plain http)."""
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{path}"


def _guesses_allowed(environ: dict[str, Any]) -> bool:
    """Client authentication is where secrets are guessed: over its limit, the
    view answers (429), a right secret included, or the limit would tell a
    right guess from wrong ones."""
    return within(current_app.config["RATELIMIT_CLIENT_AUTH"], "client-auth", environ.get("REMOTE_ADDR", ""))


def introspect(environ: dict[str, Any]) -> Answer | None:
    """An active access token introspected by the app it was issued to."""
    if environ["REQUEST_METHOD"] != "POST" or environ.get("QUERY_STRING"):
        return None
    form = _form(environ)
    if form is None or set(form) - {"token", "token_type_hint"} or not TOKEN.fullmatch(form.get("token", "")):
        return None
    if form.get("token_type_hint", "access_token") != "access_token" or not _guesses_allowed(environ):
        return None
    client = _client(environ)
    if client is None:
        return None
    row = _live_access_token(INTROSPECTION, form["token"])
    if row is None or row.client_id != client.client_id:
        return None
    body = _authlib_json(
        oauth.describe_active_token(row.client_id, row.scope, row.sub, row.expires_at, row.issued_at, False)
    )
    return Answer("200 OK", [("Content-Type", "application/json"), *NO_STORE], body, "endpoints.introspect")


TOKEN_FORM = {"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id", "client_secret"}


def token(environ: dict[str, Any]) -> Answer | None:
    """A code or refresh token redeemed by an app authenticating with its
    secret (or a public app with PKCE): Authlib's grant decides and issues, as
    in the view, from a request read here. Any refusal is rolled back and goes
    to the view, which answers it (and counts a failed client authentication)."""
    if environ["REQUEST_METHOD"] != "POST" or environ.get("QUERY_STRING"):
        return None
    form = _form(environ)
    if form is None or set(form) - TOKEN_FORM or form.get("grant_type") not in metrics.GRANTS:
        return None
    if any("\x00" in value for value in form.values()) or not _guesses_allowed(environ):
        return None
    try:
        request = oauth.ReadRequest("POST", _url(environ, "/token"), form, environ.get("HTTP_AUTHORIZATION"))
        grant = oauth.authorization_server().get_token_grant(request)
        grant.validate_token_request()
        status, body, headers = grant.create_token_response()
    except OAuth2Error:
        status = 0
    except BaseException:
        db.session.rollback()  # the view starts clean (it shares this app context)
        raise
    if status != 200:
        db.session.rollback()
        return None
    db.session.commit()
    metrics.TOKENS.labels(form["grant_type"]).inc()
    given = [(name, value) for name, value in headers if name not in ("Cache-Control", "Pragma")]
    return Answer("200 OK", [*given, *NO_STORE], _authlib_json(body), "endpoints.token")


# The plain signed-in request: anything else (prompt, max_age, hints, claims,
# acr_values, ui_locales, form_post…) may need a page, and goes to the view.
AUTHORIZE_QUERY = frozenset(
    ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method")
)


def _session_cookie(environ: dict[str, Any]) -> dict[str, Any] | None:
    """Flask's session, read with the app's own serializer, as Flask reads it."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cookies = parse_cookie(environ.get("HTTP_COOKIE", ""))
    values = cookies.getlist(app.config["SESSION_COOKIE_NAME"])
    if len(values) != 1:
        return None
    serializer = app.extensions.get("session_serializer")
    if serializer is None:  # once per process (Flask derives it per request)
        serializer = app.extensions["session_serializer"] = app.session_interface.get_signing_serializer(app)
    if serializer is None:
        return None
    try:
        data = serializer.loads(values[0], max_age=int(app.permanent_session_lifetime.total_seconds()))
    except BadData:  # a forged, expired or damaged cookie: no session here (the view decides)
        return None
    return data if isinstance(data, dict) else None


def authorize(environ: dict[str, Any]) -> Answer | None:
    """A signed-in browser asking for a code that needs no page (SSO into a
    second app): the view's own decision and issuing (authorize.decide and
    authorize.issue), with the SSO session read from the cookie here."""
    if environ["REQUEST_METHOD"] != "GET":
        return None
    try:
        pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    params = dict(pairs)
    if len(params) != len(pairs) or set(params) - AUTHORIZE_QUERY or any("\x00" in v for v in params.values()):
        return None
    cookie = _session_cookie(environ)
    sso = sessions.live(cookie.get(sessions.SSO_KEY)) if cookie else None
    if sso is None:
        return None
    try:
        request = oauth.ReadRequest("GET", _url(environ, f"/authorize?{environ.get('QUERY_STRING', '')}"), params)
        decision = authorize_view.decide(request, None, sso)
        response = None if decision.step else authorize_view.issue(request, decision, sso)
    except OAuth2Error:
        response = None
    except BaseException:
        db.session.rollback()  # the view starts clean (it shares this app context)
        raise
    if response is None or response.status_code != 302:
        db.session.rollback()
        return None
    headers = [(n, v) for n, v in response.headers.items() if n != "Content-Length"]
    return Answer(response.status, [*headers, ("Vary", "Cookie")], response.get_data(), "authorize.authorize")


def discovery(environ: dict[str, Any]) -> Answer | None:
    if environ["REQUEST_METHOD"] != "GET":
        return None
    return Answer(
        "200 OK",
        [("Content-Type", "application/json"), ("Cache-Control", endpoints.CACHE)],
        endpoints.discovery_body(),
        "endpoints.discovery",
    )


def jwks(environ: dict[str, Any]) -> Answer | None:
    if environ["REQUEST_METHOD"] != "GET":
        return None
    return Answer(
        "200 OK",
        [("Content-Type", "application/jwk-set+json"), ("Cache-Control", endpoints.JWKS_CACHE)],
        keys.ring().jwks_body(),
        "endpoints.jwks",
    )


ROUTES: dict[str, tuple[Handler, str]] = {
    "/.well-known/openid-configuration": (discovery, "/.well-known/openid-configuration"),
    "/jwks.json": (jwks, "/jwks.json"),
    "/userinfo": (userinfo, "/userinfo"),
    "/introspect": (introspect, "/introspect"),
    "/token": (token, "/token"),
    "/authorize": (authorize, "/authorize"),
}


class _Replay:
    """A request body already read, readable again by Flask."""

    def __init__(self, body: bytes) -> None:
        self._body, self._at = body, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._body) if size is None or size < 0 else min(len(self._body), self._at + size)
        chunk, self._at = self._body[self._at : end], end
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


class FastPath:
    """WSGI middleware in front of the Flask app (inside ProxyFix, so the
    client's address and scheme are already the trusted ones)."""

    def __init__(self, app: Flask, inner: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.inner = inner
        self.start_worker = app.config["OUTBOX_WORKER"] == "thread"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = ROUTES.get(environ.get("PATH_INFO", ""))
        if route is None or _nul_in_a_header(environ):
            return self.inner(environ, start_response)
        handler, rule = route
        started = time.perf_counter()
        with self.app.app_context():
            if self.start_worker:
                worker.of(self.app).start()  # a serving process's first request starts it, as in Flask
            try:
                answer = handler(environ)
            except (SQLAlchemyError, keys.KeyRingError):
                answer = None  # the Flask view says what is wrong (503 and its log line)
            if answer is None:
                return self.inner(environ, start_response)
            request_id = logs.choose_request_id(environ.get("HTTP_X_REQUEST_ID", ""))
            secure = environ.get("wsgi.url_scheme") == "https"
            given = {name for name, _ in answer.headers}
            headers = [
                *answer.headers,
                *((n, v) for n, v in security_headers(secure) if n not in given),
                ("Content-Length", str(len(answer.body))),
                ("X-Request-ID", request_id),
            ]
            seconds = time.perf_counter() - started
            status = int(answer.status[:3])
            token = logs.REQUEST_ID.set(request_id)
            try:
                logs.access(environ["REQUEST_METHOD"], answer.endpoint, rule, status, round(seconds * 1000, 2))
            finally:
                logs.REQUEST_ID.reset(token)
            metrics.observe(answer.endpoint, status, seconds)
        start_response(answer.status, headers)
        return [answer.body]


def _nul_in_a_header(environ: dict[str, Any]) -> bool:
    """A header with a NUL goes to Flask, which refuses it (security._refuse_nul).
    A plain loop (a third faster than any() over a generator): this runs on
    every request the fast path sees."""
    for name, value in environ.items():  # noqa: SIM110
        if name[:5] == "HTTP_" and "\x00" in value:
            return True
    return False


def init_app(app: Flask) -> None:
    """Before ProxyFix is installed (security.init_app), so it wraps this layer."""
    if app.config["FASTPATH"]:
        app.wsgi_app = FastPath(app, app.wsgi_app)  # type: ignore[method-assign]
