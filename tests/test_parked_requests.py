"""Authorization requests parked while someone signs in: what is kept of them,
how many one address may park, and who may resume them (security audit F-06
and F-01)."""

from urllib.parse import urlsplit

import pytest
from conftest import SECRETS
from rp import CALLBACK, RP, assert_error, make_user, query

from oidc_provider.db import db
from oidc_provider.models import Consent, LoginTransaction

TP = "https://rp.example.test/tp"
THIRD_PARTY = {"client_id": "third-party", "redirect_uri": TP, "scope": "openid profile email"}
AUTHORIZE = {
    "response_type": "code",
    "client_id": "client",
    "redirect_uri": CALLBACK,
    "scope": "openid",
    "state": "af0ifjsldkj",
    "nonce": "n-0S6_WzA2Mj",
}


def _path(response) -> str:
    assert response.status_code in (302, 303), response.status_code
    return urlsplit(response.location).path


def _parked(app) -> list[LoginTransaction]:
    with app.app_context():
        return list(db.session.scalars(db.select(LoginTransaction)))


# -- F-06: what is kept, and how much --------------------------------------------------


def test_sixty_anonymous_posts_with_a_480_kb_state_store_nothing(app):
    """F-06 proof of concept: 60 cookieless POST /authorize, 480 kB of state each."""
    state = "s" * 480_000
    for _ in range(60):
        response = app.test_client().post("/authorize", data={**AUTHORIZE, "state": state})
        assert response.status_code == 413
        assert b"Traceback" not in response.data
    assert _parked(app) == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_state_beyond_2_kb_is_invalid_request_and_not_echoed(rp, method):
    response = rp.authorize(method=method, state="s" * 2049)
    assert response.location.startswith(CALLBACK + "?")
    assert_error(query(response.location), "invalid_request", rp.issuer, state=None)
    assert _parked(rp.app) == []


@pytest.mark.parametrize(
    "params",
    [
        {"nonce": "n" * 2049},
        {"claims": '{"userinfo": {"' + "x" * 4100 + '": null}}'},
        {"login_hint": "h" * 1025},
    ],
    ids=["nonce", "claims", "login_hint"],
)
def test_a_parameter_beyond_its_cap_is_invalid_request_with_the_state(rp, params):
    response = rp.authorize(method="post", **params)
    assert_error(query(response.location), "invalid_request", rp.issuer)
    assert _parked(rp.app) == []


def test_a_request_beyond_16_kb_is_invalid_request(rp):
    extras = {f"extra{i}": "x" * 1000 for i in range(17)}  # each unknown, together too much
    response = rp.authorize(method="post", **extras)
    assert_error(query(response.location), "invalid_request", rp.issuer)
    assert _parked(rp.app) == []


def test_a_state_of_2_kb_is_still_returned_byte_exact(rp):
    state = "-._~" * 512
    response = rp.authorize(state=state)
    assert _path(response) == "/login"
    rp.code_from(rp.sign_in(response))
    assert rp.last["state"] == state


def test_only_the_parameters_the_provider_understands_are_parked(rp):
    response = rp.authorize(extra="foobar", ui_locales="se", display="page")
    assert _path(response) == "/login"
    [tx] = _parked(rp.app)
    assert set(tx.params) == {*AUTHORIZE, "ui_locales", "display"}


def test_a_body_beyond_max_content_length_is_refused_unread(make_app):
    app = make_app(MAX_CONTENT_LENGTH=1024)
    response = app.test_client().post("/login", data={"email": "a@example.com", "password": "p" * 2000})
    assert response.status_code == 413


def test_a_thousand_anonymous_requests_from_one_address_are_stopped_by_the_limit(make_app, clock):
    """F-06: parking is limited per IP (RATELIMIT_AUTHORIZE); a signed-in SSO
    request, which parks nothing, is not."""
    app = make_app(RATELIMIT_AUTHORIZE="30 per minute;300 per hour")
    user = make_user(app)
    clock.advance(seconds=30)
    signed_in = RP(app, app.test_client(), clock, user)
    signed_in.flow()  # from the same address, before the flood
    statuses = [app.test_client().get("/authorize", query_string=AUTHORIZE).status_code for _ in range(1000)]
    assert statuses.count(302) == 29 and statuses.count(429) == 971  # the sign-in above parked one
    assert len(_parked(app)) == 30
    refused = app.test_client().get("/authorize", query_string=AUTHORIZE)
    assert b"Too many sign-in requests" in refused.data
    assert "code" in query(signed_in.authorize().location)  # SSO goes on
    other = app.test_client().get(
        "/authorize", query_string=AUTHORIZE, environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )
    assert _path(other) == "/login"


# -- F-01: a parked request belongs to its browser, consent to who gave it ----------------


@pytest.fixture
def victim(app, clock):
    """Alice, signed in in her own browser; she never allowed the third-party app."""
    alice = RP(app, app.test_client(), clock, make_user(app, email="alice@example.com", name="Alice"))
    clock.advance(seconds=30)  # the enrolment's code is spent
    alice.flow()
    return alice


@pytest.fixture
def eve_consented(app, clock) -> tuple[RP, str]:
    """Eve, signed in in her browser, allows the third-party app on a request
    she parks, and does not follow the redirect: the request's id is her link."""
    eve = RP(app, app.test_client(), clock, make_user(app, email="eve@example.com", name="Eve"))
    clock.advance(seconds=30)
    eve.flow()
    response = eve.authorize(**THIRD_PARTY)
    assert _path(response) == "/authorize/consent"
    tx = query(response.location)["tx"]
    allowed = eve.browser.post(f"/authorize/consent?tx={tx}", data={"decision": "allow"})
    assert allowed.location.endswith(f"/authorize?tx={tx}")
    return eve, tx


def test_consent_on_a_parked_request_never_gives_a_code_for_someone_else(app, victim, eve_consented):
    """F-01 proof of concept: Alice opens the request Eve consented on."""
    _, tx = eve_consented
    for url in (f"/authorize?tx={tx}", f"/authorize/consent?tx={tx}"):
        response = victim.browser.get(url)
        assert response.status_code == 403, url
        assert b"started in another browser" in response.data
        assert "code=" not in (response.location or "")
    response = victim.browser.post(f"/authorize/consent?tx={tx}", data={"decision": "allow"})
    assert response.status_code == 403
    with app.app_context():
        assert db.session.query(Consent).filter_by(user_id=victim.user.id).count() == 0


def test_signing_in_on_another_browsers_request_leads_to_the_portal_not_the_app(app, clock, eve_consented):
    _, tx = eve_consented
    bob = make_user(app, email="bob@example.com")
    clock.advance(seconds=30)
    browser = app.test_client()
    assert browser.get(f"/login?tx={tx}").status_code == 200
    response = browser.post(f"/login?tx={tx}", data={"email": bob.email, "password": bob.password})
    response = browser.post("/login/code", data={"code": bob.totp.at(clock.now)})
    assert response.location == "/"  # the portal home: the request was not his to resume


def test_consent_given_by_someone_else_in_the_same_browser_is_asked_again(app, clock, eve_consented):
    """The consent on the request counts for Eve's SSO session only: Alice,
    signing in on Eve's (shared) browser with Eve's link, is asked herself."""
    eve, tx = eve_consented
    alice = make_user(app, email="alice@example.com", name="Alice")
    clock.advance(seconds=30)
    response = eve.browser.post(f"/login?tx={tx}", data={"email": alice.email, "password": alice.password})
    assert _path(response) == "/login/code"
    response = eve.browser.post("/login/code", data={"code": alice.totp.at(clock.now)})
    assert response.location.endswith(f"/authorize?tx={tx}")
    response = eve.browser.get(response.location)
    assert _path(response) == "/authorize/consent"
    assert b"Signed in as alice@example.com" in eve.browser.get(response.location).data


def test_a_request_posted_by_an_app_belongs_to_the_first_browser_that_opens_it(app, clock, victim):
    """An RP's form POST reaches /authorize without the session cookie (SameSite):
    it is parked unbound, and the browser that follows the redirect owns it."""
    posted = app.test_client().post("/authorize", data=AUTHORIZE)
    assert "Set-Cookie" not in posted.headers  # the browser's own session is left alone
    tx = query(posted.location)["tx"]
    owner = app.test_client()
    assert owner.get(f"/login?tx={tx}").status_code == 200
    assert victim.browser.get(f"/authorize?tx={tx}").status_code == 403
    assert _path(owner.get(f"/authorize?tx={tx}")) == "/login"


def test_the_third_party_app_gets_a_code_after_the_right_person_consents(rp):
    response = rp.sign_in(rp.authorize(**THIRD_PARTY))
    assert _path(response) == "/authorize/consent"
    allowed = rp.browser.post(response.location, data={"decision": "allow"})
    code = rp.code_from(rp.browser.get(allowed.location))
    tokens = rp.token(code, client_id="third-party", secret=SECRETS["third-party"], redirect_uri=TP)
    assert tokens.status_code == 200
