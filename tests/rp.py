"""An activated user with an authenticator app, and a relying party that
drives the provider the way a browser and an RP server would: `user`, `rp`."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
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


def query(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))


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
        assert response.status_code == 302, (response.status_code, response.data[:500])
        params = query(response.location)
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
