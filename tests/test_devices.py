"""Known devices (F-09): wrong guesses from elsewhere do not lock the owner out
of a browser they signed in from before. Such a browser has its own count and
lockout; any other browser counts against the account. A known device skips
nothing: the code is still asked."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from rp import RP, make_user

from oidc_provider.db import db, token_hash
from oidc_provider.models import User

WRONG = "not the password at all"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


def path(response) -> str:
    return urlsplit(response.location).path


def password(browser, user, typed=None):
    return browser.post("/login", data={"email": user.email, "password": typed or user.password})


def known_device_model():
    from oidc_provider.models import KnownDevice

    return KnownDevice


def signed_in_before(rp: RP) -> None:
    """The owner finishes a sign-in in this browser, then signs out."""
    rp.sign_in(rp.authorize())
    rp.browser.post("/logout", data={"confirm": "1"})


@pytest.fixture(params=["sqlite", "postgresql"])
def owner(request, make_app, clock) -> RP:
    """The owner's browser, on SQLite and on PostgreSQL."""
    app = make_app() if request.param == "sqlite" else request.getfixturevalue("pg_app")
    user = make_user(app)
    clock.advance(seconds=30)
    return RP(app, app.test_client(), clock, user)


def test_wrong_passwords_from_elsewhere_do_not_lock_the_owner_out_of_a_browser_they_used(owner, clock):
    signed_in_before(owner)
    attacker = owner.app.test_client()
    limit = owner.app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]
    answers = [password(attacker, owner.user, WRONG).status_code for _ in range(limit + 1)]
    assert answers == [401] * (limit - 1) + [429, 429]
    assert password(attacker, owner.user).status_code == 429  # the account is locked for strangers
    assert password(owner.app.test_client(), owner.user).status_code == 429  # and for any new browser

    response = password(owner.browser, owner.user)
    assert path(response) == "/login/code"  # the known browser still owes its code
    response = owner.browser.post("/login/code", data={"code": owner.user.totp.at(clock.now)})
    assert response.status_code == 302 and path(response) == "/"
    assert password(attacker, owner.user).status_code == 429  # the owner's sign-in forgives no stranger


def test_a_known_browser_has_its_own_lockout(owner, clock):
    signed_in_before(owner)
    limit = owner.app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]
    answers = [password(owner.browser, owner.user, WRONG).status_code for _ in range(limit)]
    assert answers == [401] * (limit - 1) + [429]
    assert password(owner.browser, owner.user).status_code == 429
    assert path(password(owner.app.test_client(), owner.user)) == "/login/code"  # the account is not locked
    with owner.app.app_context():
        user = db.session.get(User, owner.user.id)
        device = db.session.scalars(db.select(known_device_model()).filter_by(user_id=user.id)).one()
        assert (device.lockouts, user.lockouts, user.failed_logins) == (1, 0, 0)
    clock.advance(seconds=owner.app.config["LOGIN_LOCKOUT_BASE"])
    assert path(password(owner.browser, owner.user)) == "/login/code"


def test_wrong_codes_in_a_known_browser_count_there_too(owner, clock):
    signed_in_before(owner)
    limit = owner.app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]
    password(owner.browser, owner.user)
    for _ in range(limit):
        owner.browser.post("/login/code", data={"code": "000000"})
    assert owner.browser.get("/login/code").status_code == 429
    stranger = owner.app.test_client()
    assert path(password(stranger, owner.user)) == "/login/code"
    assert stranger.get("/login/code").status_code == 200


def test_the_device_cookie_is_random_httponly_lax_secure_long_lived_and_stored_hashed(
    app, client, user, clock
):
    client.environ_base["HTTP_USER_AGENT"] = FIREFOX
    password(client, user)
    assert client.get_cookie("portal_device") is None  # only a finished sign-in makes a browser known
    response = client.post("/login/code", data={"code": user.totp.at(clock.now)})
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("portal_device="))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" in header  # the issuer is https
    assert f"Max-Age={365 * 24 * 3600}" in header
    cookie = client.get_cookie("portal_device")
    assert len(cookie.value) >= 43  # 256 random bits
    with app.app_context():
        device = db.session.scalars(db.select(known_device_model())).one()
        assert device.token_hash == token_hash(cookie.value) and device.user_id == user.id
        assert device.label == "Firefox on Windows"
        assert cookie.value not in repr(vars(device))


def test_known_names_this_browsers_record_for_each_account_only(app, rp):
    from oidc_provider import devices

    other = make_user(app, email="willow@example.com")
    signed_in_before(rp)
    rp.clock.advance(seconds=30)
    rp.sign_in(rp.authorize(), user=other)  # a shared computer: both people are known here
    cookie = rp.browser.get_cookie("portal_device").value
    with app.app_context():
        buffy, willow = db.session.get(User, rp.user.id), db.session.get(User, other.id)
        with app.test_request_context(headers={"Cookie": f"portal_device={cookie}"}):
            assert devices.known(buffy).user_id == buffy.id
            assert devices.known(willow).user_id == willow.id
            assert devices.known(buffy).id != devices.known(willow).id
        with app.test_request_context():  # another browser
            assert devices.known(buffy) is None
        with app.test_request_context(headers={"Cookie": "portal_device=forged.tokens"}):
            assert devices.known(buffy) is None


def test_a_browser_is_forgotten_after_the_device_lifetime_without_a_sign_in(app, rp, clock):
    signed_in_before(rp)
    clock.advance(seconds=app.config["KNOWN_DEVICE_LIFETIME"])
    stranger = app.test_client()
    limit = app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]
    for _ in range(limit):
        password(stranger, rp.user, WRONG)
    assert password(rp.browser, rp.user).status_code == 429  # no longer known: the account's lockout
