"""The support path (UX defect 2): when no code can be had, the code page's
"Can't use any of these?" explains every way on, ending with support's reset
request as a mailto: with its subject and body filled in, and a way back to
the app; every email that says "contact support" names the address."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from mailserver import html_of, text_of
from rp import make_user

from oidc_provider import config, mfa
from oidc_provider.db import db
from oidc_provider.models import User

SUPPORT = "helpdesk@platform.example"


@pytest.fixture
def app(make_app):
    return make_app(SUPPORT_EMAIL=SUPPORT, SUPPORT_URL="https://help.platform.example/mfa")


def words(response) -> str:
    """The page as a person reads it: tags gone, entities decoded, spaces folded."""
    inline = re.sub(r"</?(?:span|a|strong|wbr|code)\b[^>]*>", "", response.get_data(as_text=True))
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def hrefs(response) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)"', response.get_data(as_text=True))]


def code_page(rp, **authorize):
    response = rp.authorize(**authorize)
    rp.browser.post(response.location, data={"email": rp.user.email, "password": rp.user.password})
    return rp.browser.get("/login/code")


def test_the_code_page_explains_what_to_do_when_no_method_can_be_used(rp):
    page = code_page(rp)
    text = words(page)
    assert "Can't use any of these?" in text
    assert "Ask support to reset your sign-in methods. Only support can do this" in text
    assert "Write from your account's address, and say why you cannot use any of your methods." in text
    assert f"Write to support Read the help pages Support's address: {SUPPORT}" in text
    assert "Read the help pages" in text and "https://help.platform.example/mfa" in hrefs(page)
    # a way back to the app that asked, through the protocol (see test_cancel_…)
    assert "Cancel and go back to Conformance client" in text


def test_the_reset_request_is_a_mailto_with_subject_and_body_filled_in(rp):
    [mailto] = [h for h in hrefs(code_page(rp)) if h.startswith(f"mailto:{SUPPORT}?")]
    fields = parse_qs(urlsplit(mailto).query)
    assert fields["subject"] == ["Request to reset my Login Portal sign-in methods (MFA)"]
    body = fields["body"][0]
    assert f"My account (email address): {rp.user.email}\r\n" in body
    assert "Why I cannot use any of my sign-in methods:" in body
    assert " " not in mailto and "\n" not in unquote(mailto.split("?")[0])  # one encoded URI (RFC 6068)


def test_with_another_method_the_first_way_on_is_that_method(app, rp, clock):
    with app.app_context():
        user = db.session.get(User, rp.user.id)
        method = mfa.start_enrolment(user, "email", "buffy.codes@example.org")
        method.confirmed_at = clock.now
        db.session.commit()
    text = words(code_page(rp))
    assert "Try another of your methods." in text
    assert "Waiting for an email or a text message? It can take a minute" in text
    assert text.index("Try another of your methods") < text.index("Ask support to reset")


def test_a_sign_in_at_the_portal_itself_offers_no_app_to_go_back_to(rp):
    rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    text = words(rp.browser.get("/login/code"))
    assert "Ask support to reset your sign-in methods" in text
    assert "Cancel and go back to" not in text and "Sign in with another account" in text


def test_without_a_help_page_only_the_address_is_named(make_app, clock):
    app = make_app(SUPPORT_EMAIL=SUPPORT)
    user = make_user(app)
    clock.advance(seconds=30)
    browser = app.test_client()
    browser.post("/login", data={"email": user.email, "password": user.password})
    page = browser.get("/login/code")
    assert SUPPORT in words(page) and "help pages" not in words(page)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SUPPORT_EMAIL", "", "SUPPORT_EMAIL: expected an email address"),
        ("SUPPORT_EMAIL", "support", "SUPPORT_EMAIL: expected an email address"),
        ("SUPPORT_EMAIL", "help desk@example.com", "SUPPORT_EMAIL: expected an email address"),
        ("SUPPORT_EMAIL", "a@b.example?cc=evil@example.com", "SUPPORT_EMAIL: expected an email address"),
        ("SUPPORT_URL", "javascript:alert(1)", "SUPPORT_URL: expected an http"),
    ],
)
def test_support_settings_are_checked_at_start_up(tmp_path, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=message):
        config.load(str(tmp_path))


# -- emails that say "contact support" name the address ------------------------------------


@pytest.fixture
def mailed(make_app, smtp_server, clock):
    app = make_app(SUPPORT_EMAIL=SUPPORT, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    return app, smtp_server


def assert_names_support(message) -> None:
    text, page = " ".join(text_of(message).split()), html_of(message)
    for part in (text, page):
        assert "administrator" not in part
        assert re.search(r"contact support\b", part, re.I) is None or SUPPORT in part
    assert f"contact support at {SUPPORT}" in text
    assert f'href="mailto:{SUPPORT}"' in page


def test_the_password_changed_mail_names_support(mailed, clock):
    app, inbox = mailed
    user = make_user(app)
    clock.advance(seconds=30)
    browser = app.test_client()
    browser.post("/login", data={"email": user.email, "password": user.password})
    browser.post("/login/code", data={"code": user.totp.at(clock.now)})
    new = "a brand new passphrase 2027"
    browser.post("/account/password", data={"current": user.password, "password": new, "confirm": new})
    assert_names_support(inbox.last(user.email))


def test_the_mfa_changed_and_mfa_reset_mails_name_support(mailed, clock):
    app, inbox = mailed
    user = make_user(app)
    with app.app_context():
        from oidc_provider import messages, mfa_support

        account = db.session.get(User, user.id)
        messages.mfa_changed(account, "A sign-in method (email codes to b***@example.org) was removed")
        assert_names_support(inbox.last(user.email))
        mfa_support.support_reset(account, "lost phone, identity checked")
        assert_names_support(inbox.last(user.email))


def test_every_email_ends_with_where_to_get_help(mailed):
    app, inbox = mailed
    client = app.test_client()
    data = {"name": "Ann", "email": "ann@example.com", "password": "a long enough passphrase"}
    assert client.post("/register", data={**data, "confirm": data["password"]}).status_code == 303
    message = inbox.last("ann@example.com")
    assert f"Need help? Write to {SUPPORT}." in text_of(message)


def test_a_disabled_account_is_told_where_support_is(app, runner, user):
    assert runner.invoke(args=["users", "disable", user.email, "--reason", "test"]).exit_code == 0
    response = app.test_client().post("/login", data={"email": user.email, "password": user.password})
    assert response.status_code == 403
    assert f"write to support at {SUPPORT}" in words(response)


# -- with passkeys and recovery codes --------------------------------------------------------


def test_the_ways_on_come_in_order_another_method_a_recovery_code_then_support(app, rp, clock):
    """One list of other ways (a method, a recovery code) and one explanation
    below it, in the order a person tries them: support last."""
    with app.app_context():
        user = db.session.get(User, rp.user.id)
        method = mfa.start_enrolment(user, "email", "buffy.codes@example.org")
        method.confirmed_at = clock.now
        db.session.commit()
    page = code_page(rp)
    text = words(page)
    assert "/login/recovery" in hrefs(page)
    assert "Can't use any of these?" in text and text.count("Can't use any of these?") == 1
    assert (
        text.index("Try another of your methods")
        < text.index("Use a recovery code. You were shown ten")
        < text.index("Ask support to reset")
    )


def test_the_recovery_code_page_names_support_and_the_reset_request(rp):
    code_page(rp)
    page = rp.browser.get("/login/recovery")
    text = words(page)
    assert page.status_code == 200
    assert "<title>Use a recovery code · " in page.get_data(as_text=True)
    assert "Ask support to reset your sign-in methods." in text
    assert f"Support's address: {SUPPORT}" in text and f"mailto:{SUPPORT}" in hrefs(page)
    [mailto] = [h for h in hrefs(page) if h.startswith(f"mailto:{SUPPORT}?")]
    assert f"My account (email address): {rp.user.email}\r\n" in parse_qs(urlsplit(mailto).query)["body"][0]
    assert "Cancel and go back to Conformance client" in text  # answered through the protocol


def test_the_recovery_code_used_mail_names_support(mailed, clock):
    app, inbox = mailed
    user = make_user(app)
    with app.app_context():
        from oidc_provider import messages

        messages.recovery_code_used(db.session.get(User, user.id), 9)
        assert_names_support(inbox.last(user.email))
