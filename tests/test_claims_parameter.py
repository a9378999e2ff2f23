"""The `claims` parameter (OIDC Core 5.5) never gets an app more than its
scopes would: only claims of scopes allowed for it in clients.yaml and, for an
app that asks for consent, shown on its consent screen and allowed (security
audit F-02). Checked when the code is saved and again at userinfo."""

import json
from urllib.parse import urlsplit

import conftest
import pytest
from conftest import SECRETS
from rp import RP, make_user

from oidc_provider import mfa
from oidc_provider.db import db, now
from oidc_provider.models import AuthorizationCode, User

TP = "https://rp.example.test/tp"
EVERYTHING = json.dumps(
    {"userinfo": {"email": None, "name": None, "phone_number": None, "phone_number_verified": None}}
)


def _with_phone(app, email: str) -> None:
    """The person also set up SMS codes: a phone number there is to learn."""
    with app.app_context():
        user = db.session.scalar(db.select(User).filter_by(email=email))
        mfa.start_enrolment(user, "sms", "+31612345678").confirmed_at = now()
        db.session.commit()


@pytest.fixture
def phone_rp(rp):
    _with_phone(rp.app, rp.user.email)
    return rp


def _userinfo(rp: RP, response, client_id: str, redirect_uri: str) -> dict:
    code = rp.code_from(response)
    tokens = rp.token(
        code, client_id=client_id, secret=SECRETS.get(client_id), redirect_uri=redirect_uri
    ).json
    return rp.userinfo(tokens["access_token"]).json


def test_a_third_party_app_gets_no_claim_outside_its_scopes_or_its_consent_screen(phone_rp):
    """F-02 proof of concept: `third-party` may not have `phone`; it asks
    scope=openid and claims for name, email and the phone number."""
    rp = phone_rp
    response = rp.authorize(client_id="third-party", redirect_uri=TP, claims=EVERYTHING)
    response = rp.sign_in(response)
    assert urlsplit(response.location).path == "/authorize/consent"
    page = rp.browser.get(response.location).get_data(as_text=True)
    # what the claims ask for is on the screen; the phone, not allowed for the app, is not
    assert "See your name" in page and "See your email address" in page
    assert "mobile number" not in page
    allowed = rp.browser.post(response.location, data={"decision": "allow"})
    info = _userinfo(rp, rp.browser.get(allowed.location), "third-party", TP)
    assert info == {"sub": rp.user.sub, "name": "Buffy Summers", "email": rp.user.email}
    with rp.app.app_context():
        stored = db.session.scalars(db.select(AuthorizationCode.claims)).all()
    assert all("phone_number" not in (claims or {}) for claims in stored)


def test_remembered_consent_for_fewer_scopes_does_not_cover_requested_claims(phone_rp):
    rp = phone_rp
    response = rp.sign_in(rp.authorize(client_id="third-party", redirect_uri=TP))  # scope openid
    rp.browser.post(response.location, data={"decision": "allow"})
    response = rp.authorize(client_id="third-party", redirect_uri=TP, claims=EVERYTHING)
    assert urlsplit(response.location).path == "/authorize/consent"  # asked again, not silent


def test_a_first_party_app_gets_requested_claims_only_of_its_allowed_scopes(make_app, clock):
    narrow = {
        "client_id": "narrow",
        "name": "Narrow app",
        "redirect_uris": ["https://rp.example.test/narrow"],
        "client_secret_sha256": conftest.sha(SECRETS["client"]),
        "scopes": ["openid", "profile"],
        "first_party": True,
    }
    app = make_app(clients=[*conftest.test_clients(), narrow])
    rp = RP(app, app.test_client(), clock, make_user(app))
    _with_phone(app, rp.user.email)
    clock.advance(seconds=30)
    response = rp.sign_in(
        rp.authorize(client_id="narrow", redirect_uri=narrow["redirect_uris"][0], claims=EVERYTHING)
    )
    code = rp.code_from(response)
    tokens = rp.token(
        code, client_id="narrow", secret=SECRETS["client"], redirect_uri=narrow["redirect_uris"][0]
    )
    assert rp.userinfo(tokens.json["access_token"]).json == {"sub": rp.user.sub, "name": "Buffy Summers"}


def test_userinfo_checks_the_claims_again_against_the_registry(make_app, clock):
    """A claim granted with a code is not given once clients.yaml no longer
    allows its scope for the app."""
    app = make_app()
    rp = RP(app, app.test_client(), clock, make_user(app))
    clock.advance(seconds=30)
    claims = json.dumps({"userinfo": {"email": None}})
    tokens = rp.tokens(claims=claims)
    assert rp.userinfo(tokens["access_token"]).json["email"] == rp.user.email
    narrowed = [
        dict(c, scopes=["openid", "profile"]) if c["client_id"] == "client" else c
        for c in conftest.test_clients()
    ]
    restarted = make_app(clients=narrowed)  # the same database, the app's scopes narrowed
    later = RP(restarted, restarted.test_client(), clock, rp.user)
    assert "email" not in later.userinfo(tokens["access_token"]).json
