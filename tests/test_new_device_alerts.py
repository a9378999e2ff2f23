"""New-device sign-in alerts as a person reads them: a sign-in from a browser
the account has not used before mails the time, the browser and system and
the IP address; "This wasn't me" (24 h, once) ends every session, token and
trusted computer and starts a password reset; NEW_DEVICE_ALERTS turns them off."""

from __future__ import annotations

import html
from urllib.parse import urlsplit

import pytest
from mailserver import links, text_of
from rp import RP

from oidc_provider import audit
from oidc_provider.db import db
from oidc_provider.models import KnownDevice, SsoSession, Token, TrustedComputer

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
SUBJECT = "New sign-in to your Login Portal account"


@pytest.fixture
def app(mail_app):
    return mail_app


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def alerts(inbox, person) -> list:
    return [m for m in inbox.to(person.email) if m["Subject"] == SUBJECT]


def new_browser(rp: RP, user_agent: str = FIREFOX) -> RP:
    browser = rp.app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = user_agent
    return RP(rp.app, browser, rp.clock, rp.user)


def test_a_sign_in_from_a_new_browser_is_mailed_with_time_browser_and_ip(rp, app, smtp_server, clock):
    rp.sign_in(rp.authorize())  # the account's first browser: nothing to compare with
    assert alerts(smtp_server, rp.user) == []

    other = new_browser(rp)
    other.sign_in(other.authorize())

    [mail] = alerts(smtp_server, rp.user)
    body = text_of(mail)
    assert "26 November 2026, 12:0" in body and "UTC" in body  # formats.moment, as every page says it (UX 16)
    assert "Firefox on Windows" in body and "127.0.0.1" in body
    assert any("/not-me/" in link for link in links(mail))
    assert "within 24 hours" in body

    other.browser.post("/logout", data={"confirm": "1"})
    other.sign_in(other.authorize())  # a known browser now
    rp.sign_in(rp.authorize(prompt="login"))
    assert len(alerts(smtp_server, rp.user)) == 1


def wasnt_me_link(rp: RP, smtp_server) -> str:
    rp.sign_in(rp.authorize(), trust=True)
    attacker = new_browser(rp)
    attacker.sign_in(attacker.authorize())
    [mail] = alerts(smtp_server, rp.user)
    [link] = [link for link in links(mail) if "/not-me/" in link]
    return urlsplit(link).path


def test_this_wasnt_me_ends_all_access_and_starts_a_password_reset(rp, app, smtp_server):
    link = wasnt_me_link(rp, smtp_server)
    tokens = rp.tokens()
    owner = rp.app.test_client()

    page = owner.get(link)  # a mail scanner opening the link changes nothing
    assert page.status_code == 200 and "Secure my account" in text(page)
    with app.app_context():
        assert db.session.query(SsoSession).filter_by(ended_at=None).count() == 2

    response = owner.post(link)

    assert response.status_code == 303 and urlsplit(response.location).path.startswith("/reset-password/")
    reset = owner.get(response.location)
    assert reset.status_code == 200 and "Your account was signed out everywhere" in text(reset)
    with app.app_context():
        assert db.session.query(SsoSession).filter_by(ended_at=None).count() == 0
        assert db.session.query(TrustedComputer).count() == 0
        assert db.session.query(Token).filter_by(revoked_at=None).count() == 0
        assert db.session.query(KnownDevice).count() == 1  # the attacker's browser is forgotten
        [event] = audit.query(user_id=rp.user.id, events=["signin_disowned"])
        assert event.details["device"] == "Firefox on Windows"
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    done = owner.post(
        response.location,
        data={"password": "a brand new long passphrase", "confirm": "a brand new long passphrase"},
    )
    assert done.status_code == 200 and "password" in text(done).lower()

    again = owner.post(link)
    assert again.status_code == 410  # it works once


def test_the_link_works_for_24_hours(rp, app, smtp_server, clock):
    link = wasnt_me_link(rp, smtp_server)
    clock.advance(hours=24, seconds=1)

    response = app.test_client().get(link)

    assert response.status_code == 410 and "This link has expired" in text(response)


def test_alerts_can_be_turned_off(make_app, smtp_server, clock, client):
    from rp import make_user

    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, NEW_DEVICE_ALERTS=False)
    person = make_user(app)
    clock.advance(seconds=30)
    first = RP(app, app.test_client(), clock, person)
    first.sign_in(first.authorize())
    second = RP(app, app.test_client(), clock, person)

    second.sign_in(second.authorize())

    assert alerts(smtp_server, person) == []
