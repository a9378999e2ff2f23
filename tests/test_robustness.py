"""Bad input anywhere gets a clear answer, never a 500 or a stack trace
(SPEC, Operations: "Bad input anywhere gets a clear error and a correct status
code, never a 500 or a stack trace").

Every route of the app's URL map gets hostile input -- very long strings, NUL
bytes, invalid UTF-8 percent-encodings, repeated parameters, wrong methods,
JSON or raw bytes where a form is expected, missing fields, non-numeric and
huge ids, huge max_age, unicode emails, `../` -- from four browsers: signed
out, between password and code, enrolling a first method, and signed in. Each
parameter a route reads is also spoiled alone in an otherwise valid request,
so the input reaches past the first check. No answer redirects to another
site or echoes markup unescaped either. On PostgreSQL too, when installed:
it refuses what SQLite lets by (NUL characters, numbers beyond INTEGER,
strings longer than their column)."""

from __future__ import annotations

import tempfile
from base64 import b64encode
from dataclasses import dataclass
from urllib.parse import urlsplit

import conftest
import pytest
from argon2 import PasswordHasher
from rp import CALLBACK, RP, make_user
from werkzeug.datastructures import MultiDict
from werkzeug.routing import Rule

from oidc_provider import create_app, mfa, passwords
from oidc_provider.db import db, now
from oidc_provider.models import LoginTransaction, MfaMethod, User

HOSTILE = [
    "",
    " ",
    "x" * 10_000,
    "a\x00b",
    "%ff",
    "../../../../etc/passwd",
    "..\\..\\windows",
    "//evil.example/path",
    "/\\evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "\"'><script>alert(1)</script>",
    "ünïcødé@exämple.com",
    "😀" * 50,
    "-1",
    "99999999999999999999999999999999",
    "9" * 5000,  # more digits than Python reads as a number
    "٣",  # a digit, but not an ASCII one
    '{"userinfo": []}',
    "[]",
    "a@b",
    "\r\nSet-Cookie: x=1",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",  # an unsigned JWT
    "a" * 128 + "\n",  # a regex's `$` lets a final line break by: one more than the pattern's 128
]
# Every parameter a page or endpoint reads (query string or form).
PARAMS = [
    "tx",
    "next",
    "reauth",
    "method",
    "new",
    "replaces",
    "sent",
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "prompt",
    "max_age",
    "id_token_hint",
    "login_hint",
    "acr_values",
    "claims",
    "request",
    "request_uri",
    "response_mode",
    "code_challenge",
    "code_challenge_method",
    "post_logout_redirect_uri",
    "access_token",
    "token",
    "token_type_hint",
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "email",
    "password",
    "confirm",
    "current",
    "name",
    "phone",
    "trust",
    "decision",
    "csrf_token",
]
AUTHORIZE = {
    "response_type": "code",
    "client_id": "client",
    "redirect_uri": CALLBACK,
    "scope": "openid",
    "state": "af0ifjsldkj",
    "nonce": "n-0S6_WzA2Mj",
}
PASSWORDS = {"current": "correct horse battery staple 42", "password": "a new pass phrase 77", "confirm": "x"}
# A valid-looking request per endpoint; each of its parameters is spoiled in turn.
BASELINES: dict[str, dict[str, str]] = {
    "authorize.authorize": {
        **AUTHORIZE,
        "max_age": "600",
        "claims": '{"userinfo": {"email": null}}',
        "login_hint": "x",
        "acr_values": "urn:login-portal:acr:mfa",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "response_mode": "query",
    },
    "authorize.consent": {"tx": "x", "decision": "allow"},
    "endpoints.token": {"grant_type": "authorization_code", "code": "x", "redirect_uri": CALLBACK},
    "endpoints.revoke": {"token": "x", "token_type_hint": "refresh_token"},
    "endpoints.introspect": {"token": "x", "token_type_hint": "access_token"},
    "endpoints.userinfo": {"access_token": "x"},
    "portal.sign_out": {
        "id_token_hint": "x",
        "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
        "state": "s",
        "client_id": "client",
        "confirm": "1",
    },
    "login.password": {"email": "signed-in@example.com", "password": "wrong", "tx": "x", "next": "/account"},
    "login.second_factor": {"code": "123456", "method": "1", "trust": "y"},
    "login.send_code": {"method": "2"},
    "login.step_up": {"tx": "x"},
    "account.register": {"name": "N", "email": "n@example.com", "password": "p", "confirm": "p"},
    "account.check_email": {"sent": "reset"},
    "account.resend_activation": {"email": "n@example.com"},
    "account.forgot_password": {"email": "n@example.com"},
    "account.reset_password": {"password": "p", "confirm": "p"},
    "enrol.authenticator": {"code": "123456", "new": "1", "next": "/"},
    "enrol.email": {"email": "codes@example.com", "replaces": "2", "next": "/"},
    "enrol.sms": {"phone": "+31612345678", "replaces": "3", "next": "/"},
    "enrol.confirm": {"code": "123456", "next": "/"},
    "portal.change_password": PASSWORDS,
    "portal.mfa_welcome": {"next": "/account"},
}
# Raw query strings and form bodies no client library would send.
RAW = [
    "%ff%fe=%ff",
    "tx=%ff&next=%ff&method=%ff&redirect_uri=%ff&client_id=%ff&email=%ff&code=%ff",
    "client_id=client&response_type=code&redirect_uri=https%3A%2F%2Frp.example.test%2Fcallback"
    "&scope=openid&max_age=%ff&state=%ff",
    "client_id=client&response_type=code&redirect_uri=https%3A%2F%2Frp.example.test%2Fcallback"
    "&scope=openid&max_age=" + "9" * 5000,
    "%00=%00&next=%00&tx=%00",
    "next=%2F%2Fevil.example&tx=&method=&reauth=1",
    "&&&==&=&a",
    "a=" + "%41" * 5000,
]
SEGMENTS = [
    "abc",
    "-1",
    "0",
    "99999999999999999999999999",
    "2147483648",
    "9" * 5000,
    "%ff",
    "%00",
    "..%2F..%2Fetc%2Fpasswd",
    "..",
    "x" * 5000,
    "%C3%BC%F0%9F%98%80",
    "1.5",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
TRUSTED_HOSTS = {"", "localhost", "rp.example.test"}  # a relative redirect, ourselves, a registered app
HEADERS = [
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer %ff\x7f"},
    {"Authorization": "Basic %%%%"},
    {"Authorization": "Basic //79"},  # base64 of bytes that are not UTF-8
    {"Authorization": "Basic " + "A" * 10_000},
    {"Authorization": "Basic Y2xpZW50"},  # "client", no colon
    {"Authorization": "Digest x"},
    {"Accept": "application/json"},
    {"Content-Type": "application/x-www-form-urlencoded; charset=bogus"},
    {"Cookie": "portal_session=%ff; portal_trusted=\x00"},
    {"Cookie": "portal_session=" + "x" * 3000},
    {"Cookie": "portal_trusted=" + "%ff" * 50},
    {"User-Agent": "\x00" + "x" * 5000},
    {"Host": "evil.example"},
]


def _rules() -> list[Rule]:
    """Every route of the app (its URL map), HEAD/OPTIONS aside."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "INSTANCE_PATH": folder,
                "DATABASE_URL": f"sqlite:///{folder}/rules.sqlite3",
                "OIDC_KEYS_DIR": f"{folder}/keys",
                "SECRET_KEY": "rules",
            }
        )
        app.extensions["outbox_worker"].stop()
        return sorted(app.url_map.iter_rules(), key=lambda r: r.rule)


RULES = _rules()


def _path(rule: Rule, segment: str) -> str:
    """The rule's path with `segment` in each of its arguments."""
    path = "".join(segment if is_argument else text for is_argument, text in rule._trace)
    return path.split("|", 1)[1]  # the trace starts with the (empty) host part


def _sender(browser, problems: list[str]):
    """send(method, path, **kwargs): one request; what is wrong with its answer
    goes into `problems`."""

    def send(method: str, path: str, **kwargs) -> None:
        what = f"{method} {path[:100]} {repr(kwargs)[:160]}"
        try:
            response = browser.open(path, method=method, **kwargs)
        except Exception as exc:  # TESTING re-raises what would have been a 500
            problems.append(f"{type(exc).__name__}: {str(exc)[:160]} for {what}")
            return
        body = response.get_data()
        response.close()
        location = response.headers.get("Location", "")
        if response.status_code >= 500 and not (path == "/healthz" and response.status_code == 503):
            problems.append(f"{response.status_code} for {what}")
        elif b"Traceback" in body:
            problems.append(f"a traceback for {what}")
        elif not 200 <= response.status_code < 500:
            problems.append(f"status {response.status_code} for {what}")
        elif urlsplit(location.replace("\\", "/")).netloc not in TRUSTED_HOSTS:
            problems.append(f"a redirect to {location[:100]} for {what}")
        elif response.mimetype == "text/html" and b"<script>alert(1)" in body:
            problems.append(f"unescaped markup for {what}")

    return send


def _parameters(method: str, values: dict) -> dict:
    """The same parameters in the query and, unless GET, in a form body (pages
    read some from each)."""
    return {"query_string": values} | ({"data": values} if method != "GET" else {})


@dataclass(frozen=True)
class Fuzz:
    """What one run sends: every value on SQLite; on PostgreSQL the few that
    only a stricter database refuses."""

    values: list[str]
    segments: list[str]


SQLITE = Fuzz(HOSTILE, SEGMENTS)
POSTGRES = Fuzz(
    ["x" * 10_000, "a\x00b", "99999999999999999999999999999999", "😀" * 50, "a" * 128 + "\n", "%ff"],
    ["2147483648", "99999999999999999999999999", "%00", "x" * 5000],
)


def _hostile_requests(
    browser, rule: Rule, problems: list[str], auth: dict, fuzz: Fuzz, real: dict[str, list[str]]
) -> None:
    """Everything the module docstring lists, at one route. `real`: values by
    parameter that name something there is (someone else's, of another kind…)."""
    send = _sender(browser, problems)
    methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
    for segment in fuzz.segments if rule.arguments else []:
        for method in METHODS:
            send(method, _path(rule, segment))
    path = _path(rule, "1")
    for method in METHODS:
        send(method, path)
    baseline = BASELINES.get(rule.endpoint, {})
    for method in methods:
        for value in fuzz.values:  # everything spoilt at once
            send(method, path, **_parameters(method, dict.fromkeys(PARAMS, value)))
        for name in baseline:  # one thing spoilt in a valid-looking request
            for value in fuzz.values + real.get(name, []):
                send(method, path, headers=auth, **_parameters(method, {**baseline, name: value}))
            missing = {k: v for k, v in baseline.items() if k != name}
            send(method, path, headers=auth, **_parameters(method, missing))
            repeated = MultiDict([*baseline.items(), (name, "again")])
            send(method, path, headers=auth, **_parameters(method, repeated))
        if fuzz is SQLITE:
            _malformed_bodies(send, method, path, baseline, auth)


def _malformed_bodies(send, method: str, path: str, baseline: dict, auth: dict) -> None:
    """Raw query strings, bodies of the wrong type or broken, odd headers."""
    for raw in RAW:
        send(method, f"{path}?{raw}")
        if method != "GET":
            send(method, path, data=raw, content_type="application/x-www-form-urlencoded")
    send(method, path, query_string=[(name, value) for name in PARAMS for value in ("a", "b")])
    if method != "GET":
        send(method, path, json={name: ["x", {"y": 1}] for name in PARAMS})
        send(method, path, json=baseline, headers=auth)
        send(method, path, data=b"\xff\xfe\x00{", content_type="application/json")
        send(method, path, data=b"\xff\xfe\x00=\xff", content_type="text/plain")
        send(method, path, data=b"--x\r\nbroken", content_type="multipart/form-data; boundary=x")
    for headers in HEADERS:
        send(method, path, headers=headers, data={**baseline} if method != "GET" else None)


# -- the browsers -------------------------------------------------------------------------


def _with_email_method(app, email: str) -> None:
    """Give the user a confirmed email method (after the authenticator, id 1), so
    both kinds of code pages are reachable."""
    with app.app_context():
        user = db.session.scalar(db.select(User).filter_by(email=email))
        mfa.start_enrolment(user, "email", "codes@example.org").confirmed_at = now()
        db.session.commit()


def _signed_out(app, clock):
    return app.test_client()


def _between_password_and_code(app, clock):
    user = make_user(app, email="pending@example.com")
    _with_email_method(app, user.email)
    clock.advance(seconds=30)
    browser = app.test_client()
    response = browser.post("/login", data={"email": user.email, "password": user.password})
    assert urlsplit(response.location).path == "/login/code"
    return browser


def _enrolling(app, clock):
    user = make_user(app, email="enrolling@example.com", totp=False)
    browser = app.test_client()
    response = browser.post("/login", data={"email": user.email, "password": user.password})
    assert urlsplit(response.location).path == "/mfa/setup"
    return browser


def _signed_in(app, clock):
    """Signed in, with an ID token for /logout's hint and a request waiting for consent."""
    user = make_user(app, email="signed-in@example.com")
    _with_email_method(app, user.email)
    clock.advance(seconds=30)
    browser = app.test_client()
    rp = RP(app, browser, clock, user)
    app.extensions["fuzz_id_token"] = rp.tokens()["id_token"]
    third_party = {"client_id": "third-party", "redirect_uri": "https://rp.example.test/tp"}
    assert urlsplit(rp.authorize(**third_party).location).path == "/authorize/consent"
    assert browser.get("/account").status_code == 200
    return browser


def _real_values(app) -> dict[str, list[str]]:
    """What the parameters that name things can name in the app now."""
    with app.app_context():
        methods = [str(i) for i in db.session.scalars(db.select(MfaMethod.id))]
        requests = list(db.session.scalars(db.select(LoginTransaction.id)))
    hint = app.extensions.get("fuzz_id_token")
    return {"method": methods, "replaces": methods, "tx": requests, "id_token_hint": [hint] if hint else []}


STATES = {
    "signed out": _signed_out,
    "password, no code": _between_password_and_code,
    "enrolling": _enrolling,
    "signed in": _signed_in,
}
# RP servers, files and the account pages: the same whoever is signed in
STATELESS = ("endpoints.", "static", "portal.logo", "account.")


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzz(request, make_app, monkeypatch):
    """(the app, what to send) on each database; the guessing limits off so
    hostile input reaches the views, and argon2 at its cheapest (thousands of
    wrong passwords; what is tested here is the answer, not the hashing)."""
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    passwords._dummy_hash.cache_clear()
    request.addfinalizer(passwords._dummy_hash.cache_clear)
    settings = {"RATELIMIT_ENABLED": False, "LOGIN_FAILURES_BEFORE_LOCKOUT": 10**6}
    if request.param == "sqlite":
        return make_app(**settings), SQLITE
    app = make_app(DATABASE_URL=request.getfixturevalue("postgres_url"), **settings)
    with app.app_context():
        db.drop_all()
        db.create_all()
    return app, POSTGRES


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.rule)
def test_hostile_input_never_gets_a_500(rule, fuzz, clock):
    app, values = fuzz
    auth = {}
    if rule.endpoint.startswith("endpoints."):
        auth = {
            "Authorization": "Basic " + b64encode(f"client:{conftest.SECRETS['client']}".encode()).decode()
        }
    states = ["signed out"] if rule.endpoint.startswith(STATELESS) else list(STATES)
    problems: list[str] = []
    for state in states:
        before = len(problems)
        browser = STATES[state](app, clock)
        _hostile_requests(browser, rule, problems, auth, values, _real_values(app))
        problems[before:] = [f"[{state}] {p}" for p in problems[before:]]
        clock.advance(minutes=1)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(dict.fromkeys(problems))
