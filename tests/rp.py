"""An activated user with an authenticator app, and a relying party that
drives the provider the way a browser and an RP server would: `user`, `rp`."""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, parse_qsl, urlsplit

import jwt as pyjwt
import pyotp
import pytest

from oidc_provider import mfa, passwords
from oidc_provider.db import db, now
from oidc_provider.models import User

PASSWORD = "correct horse battery staple 42"
CALLBACK = "https://rp.example.test/callback"


@dataclass
class TestUser:
    id: int
    email: str
    sub: str
    totp: pyotp.TOTP
    password: str = PASSWORD


def make_user(app, email="buffy@example.com", name="Buffy Summers", password=PASSWORD, totp=True) -> TestUser:
    """Create an activated user (and confirm an authenticator app like a user would)."""
    with app.app_context():
        user = User(
            sub=f"u-{secrets.token_hex(8)}",
            email=email,
            name=name,
            password_hash=passwords.hash_password(password),
            activated_at=now(),
        )
        db.session.add(user)
        db.session.commit()
        otp = None
        if totp:
            method = mfa.start_enrolment(user, "totp")
            secret = parse_qs(urlsplit(mfa.provisioning_uri(method)).query)["secret"][0]
            otp = pyotp.TOTP(secret)
            assert mfa.confirm_enrolment(method, otp.at(now())).ok
        return TestUser(user.id, user.email, user.sub, otp, password)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Parameters by name; a repeated one is an error (RPs refuse e.g. two `iss`)."""
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), f"repeated parameters: {pairs}"
    return dict(pairs)


def query(location: str) -> dict[str, str]:
    return unique(parse_qsl(urlsplit(location).query, keep_blank_values=True))


# What the conformance suite allows in an authorization error response (W beyond these).
ERROR_PARAMS = {"error", "error_description", "error_uri", "state", "session_state", "iss"}
DESCRIPTION_CHARS = set(string.printable) - set('"\\') - set("\t\r\n\x0b\x0c")


def assert_error(
    params: dict[str, str], error: str | set[str], issuer: str, state: str | None = "af0ifjsldkj"
):
    """An authorization error as the suite checks it: the error, the exact
    `state`, `iss`, no `code`, only allowed parameters, a printable description."""
    assert params["error"] in ({error} if isinstance(error, str) else error), params
    assert params.get("state") == state, params
    assert params["iss"] == issuer
    assert set(params) <= ERROR_PARAMS, params
    assert set(params.get("error_description", "")) <= DESCRIPTION_CHARS, params["error_description"]


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append({**attributes, "fields": []})
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["fields"].append((attributes["name"], attributes.get("value") or ""))


def forms(html: bytes) -> list[dict]:
    """Every <form> of a page: its attributes and `fields`, a list of (name, value)."""
    parser = _FormParser()
    parser.feed(html.decode())
    return parser.forms


def authorization_response(response) -> dict[str, str]:
    """What the RP's callback receives: the redirect's query, or the fields a
    form_post page will POST (with nothing in the action's query)."""
    if response.status_code == 200:
        action, params = form_post(response)
        assert "?" not in action, action
        return params
    assert response.status_code == 302, (response.status_code, response.data[:500])
    return query(response.location)


def form_post(response) -> tuple[str, dict[str, str]]:
    """A response_mode=form_post answer as the browser will send it: the
    action and the fields, checked to be a url-encoded POST (the suite's check)."""
    assert response.status_code == 200, (response.status_code, response.location)
    assert response.headers["Cache-Control"] == "no-store"
    [form] = forms(response.data)
    assert form["method"] == "post"
    assert form.get("enctype", "application/x-www-form-urlencoded") == "application/x-www-form-urlencoded"
    return form["action"], unique(form["fields"])


@dataclass
class RP:
    """One browser (the Flask test client keeps its cookies) and the RP server."""

    app: object
    browser: object
    clock: object
    user: TestUser | None = None
    last: dict = field(default_factory=dict)

    def authorize(self, client_id="client", redirect_uri=CALLBACK, scope="openid", method="get", **params):
        data = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": "af0ifjsldkj",
            "nonce": "n-0S6_WzA2Mj",
            **params,
        }
        data = {k: v for k, v in data.items() if v is not None}
        if method == "post":
            return self.browser.post("/authorize", data=data)
        return self.browser.get("/authorize", query_string=data)

    @property
    def issuer(self) -> str:
        return self.app.config["OIDC_ISSUER"]

    def code_now(self) -> str:
        """The authenticator's current code; the clock moves on a step so the next is new."""
        code = self.user.totp.at(self.clock.now)
        return code

    def sign_in(self, response, user: TestUser | None = None, trust=False, code=True):
        """Follow the redirects to the hosted pages and sign in; return the last response."""
        user = user or self.user
        assert response.status_code == 302, response.status_code
        location = response.location
        assert urlsplit(location).path == "/login", location
        response = self.browser.post(location, data={"email": user.email, "password": user.password})
        if not code:
            return response
        assert response.status_code == 302 and urlsplit(response.location).path == "/login/code", (
            response.location
        )
        response = self.browser.post(
            "/login/code", data={"code": user.totp.at(self.clock.now), "trust": "y" if trust else ""}
        )
        self.clock.advance(seconds=30)  # the next sign-in needs the next code (replay guard)
        assert response.status_code == 302, response.data
        return self.browser.get(response.location)

    def code_from(self, response) -> str:
        params = authorization_response(response)
        assert "code" in params, params
        self.last = params
        return params["code"]

    def login_code(self, client_id="client", **params) -> str:
        """authorize → sign in if asked → the code."""
        response = self.authorize(client_id=client_id, **params)
        if urlsplit(response.location).path == "/login":
            response = self.sign_in(response)
        return self.code_from(response)

    def token(self, code, client_id="client", secret=None, redirect_uri=CALLBACK, auth="basic", **extra):
        from conftest import SECRETS

        secret = secret or SECRETS.get(client_id)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, **extra}
        return self._token_request(form, client_id, secret, auth)

    def refresh(self, refresh_token, client_id="client", secret=None, auth="basic", **extra):
        from conftest import SECRETS

        secret = secret or SECRETS.get(client_id)
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
        return self._token_request(form, client_id, secret, auth)

    def _token_request(self, form, client_id, secret, auth):
        server = self.app.test_client()  # the RP's server, not the browser
        if auth == "basic":
            return server.post("/token", data=form, auth=(client_id, secret))
        if auth == "post":
            return server.post("/token", data={**form, "client_id": client_id, "client_secret": secret})
        return server.post("/token", data={**form, "client_id": client_id})

    def id_token(self, token: str, client_id="client") -> dict:
        """Validate an ID token with PyJWT (not the server's JOSE library) against the JWKS."""
        jwks = self.app.test_client().get("/jwks.json").json
        header = pyjwt.get_unverified_header(token)
        [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
        key = pyjwt.PyJWK(jwk)
        return pyjwt.decode(
            token,
            key.key,
            algorithms=[header["alg"]],
            audience=client_id,
            issuer=self.app.config["OIDC_ISSUER"],
            options={"verify_iat": False, "verify_exp": False},
        )

    def checked_id_token(self, tokens: dict, client_id="client", nonce: str | None = "n-0S6_WzA2Mj") -> dict:
        """A token response and its ID token, checked as the suite checks every flow."""
        assert tokens["access_token"] and tokens["token_type"] == "Bearer"
        assert isinstance(tokens["expires_in"], int) and 1 <= tokens["expires_in"] <= 31_536_000
        header = pyjwt.get_unverified_header(tokens["id_token"])
        jwks = self.app.test_client().get("/jwks.json").json["keys"]
        [jwk] = [k for k in jwks if k["kid"] == header["kid"]]
        assert (jwk["alg"], jwk["use"]) == (header["alg"], "sig")
        claims = self.id_token(tokens["id_token"], client_id)
        at = int(self.clock.now.timestamp())
        assert claims["exp"] > at and abs(claims["iat"] - at) <= 300
        assert claims.get("nonce") == nonce
        assert 1 <= len(claims["sub"]) <= 255 and claims["sub"].isascii() and claims["sub"].isprintable()
        assert isinstance(claims["acr"], str) and claims["acr"]
        digest = hashlib.sha256(tokens["access_token"].encode()).digest()[:16]
        assert claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return claims

    def userinfo(self, access_token: str, how: str = "get"):
        """Call userinfo the three ways the suite does: GET, POST with the
        header and an empty body, POST with the token in the body."""
        server = self.app.test_client()
        header = {"Authorization": f"Bearer {access_token}"}
        if how == "get":
            return server.get("/userinfo", headers=header)
        if how == "post-header":
            return server.post("/userinfo", headers=header)
        return server.post("/userinfo", data={"access_token": access_token})

    def redeem(self, response, **check) -> tuple[dict, dict]:
        """Sign in if an /authorize response asks for it, redeem the code:
        (the token response, the checked ID token claims)."""
        if response.status_code == 302 and urlsplit(response.location).path == "/login":
            response = self.sign_in(response)
        tokens = self.token(self.code_from(response)).json
        return tokens, self.checked_id_token(tokens, **check)

    def flow(self, **params) -> tuple[dict, dict, dict]:
        """authorize → sign in if asked → token → userinfo, each checked as the
        suite checks them: (tokens, ID token claims, userinfo)."""
        tokens, claims = self.redeem(self.authorize(**params), nonce=params.get("nonce", "n-0S6_WzA2Mj"))
        response = self.userinfo(tokens["access_token"])
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert response.json["sub"] == claims["sub"]
        return tokens, claims, response.json

    def tokens(self, client_id="client", **params) -> dict:
        response = self.token(self.login_code(client_id=client_id, **params), client_id=client_id)
        assert response.status_code == 200, response.json
        return response.json


@pytest.fixture
def user(app, clock) -> TestUser:
    made = make_user(app)
    clock.advance(seconds=30)  # the enrolment code is spent; sign-ins use the next one
    return made


@pytest.fixture
def rp(app, client, clock, user) -> RP:
    return RP(app, client, clock, user)
