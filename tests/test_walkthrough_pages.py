"""The pages as the UX walk-through (2026-12-03) found them, fixed: each test
names its defect and asserts what a person sees (status, text, where a link
or a button leads). Layout, focus and keyboard are checked in a real browser
(tests/e2e/test_e2e_walkthrough.py)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from conftest import test_clients as registered_clients
from mailserver import html_of, text_of
from rp import CALLBACK, assert_error, make_user, query

from oidc_provider import formats, mfa
from oidc_provider.db import db
from oidc_provider.models import MfaMethod, User

HOME = "https://rp.example.test/home"


@pytest.fixture
def app(make_app):
    """The test apps; the conformance client has a home page to go back to."""
    clients = registered_clients()
    clients[0]["home_url"] = HOME
    return make_app(clients)


def words(response) -> str:
    """The page as a person reads it: tags gone, entities decoded, spaces folded."""
    inline = re.sub(r"</?(?:span|a|strong|wbr|code)\b[^>]*>", "", response.get_data(as_text=True))
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def body(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def title(response) -> str:
    return html.unescape(re.search(r"<title>(.*?)</title>", response.get_data(as_text=True), re.S).group(1))


def tag(response, element_id: str) -> str:
    """The opening tag of the element with this id."""
    return re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', response.get_data(as_text=True)).group(0)


def path(response) -> str:
    return urlsplit(response.location).path


def signed_in(rp) -> None:
    response = rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    assert path(response) == "/login/code"
    assert rp.browser.post("/login/code", data={"code": rp.user.totp.at(rp.clock.now)}).status_code == 302
    rp.clock.advance(seconds=30)


def give_email_method(app, user_id: int, target: str, at: datetime) -> int:
    with app.app_context():
        method = mfa.start_enrolment(db.session.get(User, user_id), "email", target)
        method.confirmed_at = at
        db.session.commit()
        return method.id


# -- 3 and 10: a way back to the app, through the protocol --------------------------------


def test_cancel_on_the_sign_in_page_answers_the_app_access_denied(rp):
    """UX 10: the sign-in page "to continue to <app>" has a way back to it."""
    login = rp.browser.get(rp.authorize().location)
    assert "Cancel and go back to Conformance client" in words(login)
    action = re.search(r'<form method="post" action="(/authorize/cancel\?tx=[^"]+)"', body(login)).group(1)
    response = rp.browser.post(action)
    assert response.location.startswith(CALLBACK + "?")
    assert_error(query(response.location), "access_denied", rp.issuer)
    again = rp.browser.post(action)  # answered once; the back button finds a page, not the app
    assert again.status_code == 410 and "already answered" in words(again)


def test_cancel_during_the_first_mfa_set_up_returns_to_the_app(app, rp, clock):
    """UX 3: Cancel on "Set up two-step sign-in" lost the app; now the app's
    request is answered access_denied (with state and iss) and nothing is set up."""
    newcomer = make_user(app, email="willow@example.com", totp=False)
    response = rp.browser.post(
        rp.authorize().location, data={"email": newcomer.email, "password": newcomer.password}
    )
    choose = rp.browser.get(response.location)
    assert path(response) == "/mfa/setup" and "to continue to Conformance client" in words(choose)
    assert "Can't do this now? Cancel and go back to Conformance client" in words(choose)
    action = re.search(r'action="(/authorize/cancel\?tx=[^"]+)"', body(choose)).group(1)
    response = rp.browser.post(action)
    assert_error(query(response.location), "access_denied", rp.issuer)
    assert path(rp.browser.get("/mfa/setup")) == "/login"  # the sign-in in progress is over
    with app.app_context():
        assert db.session.scalars(db.select(MfaMethod).filter_by(user_id=newcomer.id)).all() == []


def test_cancel_during_the_first_mfa_set_up_at_the_portal_says_it_was_skipped(app, client):
    newcomer = make_user(app, email="willow@example.com", totp=False)
    client.post("/login", data={"email": newcomer.email, "password": newcomer.password})
    choose = client.get("/mfa/setup")
    assert re.search(r'action="/login/cancel"', body(choose))
    response = client.post("/login/cancel")
    assert response.status_code == 303 and path(response) == "/login"
    assert "Two-step sign-in was not set up, so you are not signed in." in words(client.get("/login"))


def test_the_authorize_error_page_leads_back_to_the_apps_home_never_its_redirect_uri(rp):
    """UX 10: an unregistered redirect_uri gets a page (never a redirect);
    the app is known, so the page leads to its registered home page."""
    evil = "https://evil.example/cb"
    response = rp.authorize(redirect_uri=evil)
    assert response.status_code == 400
    assert "Back to Conformance client" in words(response)
    links = re.findall(r'href="([^"]+)"', body(response))
    assert HOME in links and not any("evil.example" in link for link in links)
    unknown = rp.authorize(client_id="no-such-app")
    assert unknown.status_code == 400 and "Back to" not in words(unknown)


# -- 7: "Send a new code" below the field, with a countdown --------------------------------


def test_send_a_new_code_sits_below_the_field_with_the_wait_left(app, rp, clock):
    method_id = give_email_method(app, rp.user.id, "buffy.codes@example.org", clock.now)
    rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    sent = rp.browser.post("/login/code/send", data={"method": str(method_id)})
    clock.advance(seconds=4)
    page = rp.browser.get(sent.location)
    html_text = body(page)
    assert html_text.index('name="code"') < html_text.index("send a new code")
    assert 'data-wait="26"' in tag(page, "resend-wait")
    assert "You can ask for a new code in 0:26." in words(page)
    assert '<script src="/static/code.js" defer></script>' in html_text  # the live countdown
    clock.advance(seconds=30)
    assert "resend-wait" not in body(rp.browser.get(sent.location))  # nothing to wait for


# -- 8: registration reports every problem at once -----------------------------------------


def test_registration_reports_every_password_problem_at_once_and_keeps_what_was_right(client):
    response = client.post(
        "/register", data={"name": "Ann", "email": "ann@example.com", "password": "short", "confirm": "other"}
    )
    assert response.status_code == 422
    text = words(response)
    assert "Use at least 12 characters (this one has 5)." in text and "The passwords do not match." in text
    assert 'value="Ann"' in body(response) and 'value="ann@example.com"' in body(response)
    assert 'value="short"' not in body(response) and 'value="other"' not in body(response)

    good = "a long enough passphrase"
    response = client.post(
        "/register", data={"name": "", "email": "ann@example.com", "password": good, "confirm": good}
    )
    assert response.status_code == 422 and "Enter your full name." in words(response)
    assert body(response).count(f'value="{good}"') == 2  # not typed twice again for a missing name
    assert "autofocus" in tag(response, "name")  # the keyboard is in the field to fix


# -- 9 and 17: the owner's own addresses, in full and unbroken ------------------------------


def test_the_owner_sees_their_addresses_in_full_and_the_code_page_masks_them(app, rp, clock):
    give_email_method(app, rp.user.id, "buffy.codes@example.org", clock.now)
    signed_in(rp)
    for url in ("/account", "/account/mfa"):
        page = rp.browser.get(url)
        assert '<span class="address">buffy.codes@example.org</span>' in body(page), url
    assert '<span class="address">buffy@example.com</span>' in body(rp.browser.get("/account"))
    rp.browser.post("/logout", data={"confirm": "1"})
    rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    code_page = words(rp.browser.get("/login/code"))
    assert "b***@example.org" in code_page and "buffy.codes@example.org" not in code_page


# -- 11 and 12: Manage MFA ----------------------------------------------------------------


def test_removing_a_method_asks_first(app, rp, clock):
    method_id = give_email_method(app, rp.user.id, "buffy.codes@example.org", clock.now)
    signed_in(rp)
    manage = rp.browser.get("/account/mfa")
    assert f'href="/account/mfa/{method_id}/remove"' in body(manage)
    confirm = rp.browser.get(f"/account/mfa/{method_id}/remove")
    assert confirm.status_code == 200 and title(confirm).startswith("Remove a sign-in method?")
    text = words(confirm)
    assert "Remove this sign-in method? Email codes to buffy.codes@example.org" in text
    assert "You keep your other method" in text and "Keep it" in text
    assert f'action="/account/mfa/{method_id}/remove"' in body(confirm)
    with app.app_context():
        assert db.session.get(MfaMethod, method_id) is not None  # asking removed nothing
    assert rp.browser.get("/account/mfa/999999/remove").status_code == 404
    rp.browser.post(f"/account/mfa/{method_id}/remove")  # removed; the last one is not even offered
    with app.app_context():
        last = db.session.scalars(db.select(MfaMethod).filter_by(user_id=rp.user.id)).one()
    only = rp.browser.get(f"/account/mfa/{last.id}/remove")
    assert path(only) == "/account/mfa"
    assert "This is your only sign-in method" in words(rp.browser.get("/account/mfa"))


def test_manage_mfa_links_to_add_a_method_and_asks_to_confirm_it_is_you_later(app, rp, clock):
    signed_in(rp)
    manage = rp.browser.get("/account/mfa")
    assert re.search(r'<a href="/mfa/setup">Add a method</a></p>', body(manage))  # the banner (12a)
    clock.advance(minutes=6)  # past REAUTH_MAX_AGE
    later = rp.browser.get("/account/mfa")
    assert "Confirm it's you to make changes" in words(later)  # a button, not vanished buttons (12b)
    assert re.search(
        r'class="button primary" href="/login\?reauth=1&amp;next=/account/mfa"', later.get_data(as_text=True)
    )
    assert "Remove" not in words(later)
    assert path(rp.browser.get("/account/mfa/1/remove")) == "/login"  # and the pages ask too


# -- 13: one navigation, one title per page -----------------------------------------------


def test_every_signed_in_page_has_the_navigation_and_a_title_of_its_own(app, rp, clock):
    method_id = give_email_method(app, rp.user.id, "buffy.codes@example.org", clock.now)
    signed_in(rp)
    urls = [
        "/",
        "/account",
        "/account/activity",
        "/account/password",
        "/account/mfa",
        f"/account/mfa/{method_id}/remove",
        "/mfa/setup",
        "/mfa/setup/email",
        "/mfa/setup/sms",
        "/mfa/setup/authenticator",
        f"/mfa/setup/email?replaces={method_id}",
        "/mfa/setup/passkey",
    ]
    titles = {}
    for url in urls:
        page = rp.browser.get(url)
        assert page.status_code == 200, url
        assert '<nav aria-label="Account">' in body(page), url
        assert "Manage MFA" in words(page) and "Sign out" in words(page)
        titles[url] = title(page)
    assert titles["/mfa/setup"] == "Add a sign-in method · Login Portal"
    assert titles["/mfa/setup/email"] == "Get codes by email · Login Portal"
    assert titles["/mfa/setup/authenticator"] == "Set up a new authenticator app · Login Portal"  # replaces
    assert titles["/mfa/setup/passkey"] == "Add a passkey · Login Portal"
    same = {t for t in titles.values() if list(titles.values()).count(t) > 1}
    assert same == {"Get codes by email · Login Portal"}  # adding and changing an address: one page
    replace = rp.browser.get("/mfa/setup/authenticator?new=1", follow_redirects=True)
    assert "Back to Manage MFA" in words(replace) and "Choose another method" not in words(replace)


# -- 14: focus and field state after an error ---------------------------------------------


def test_after_a_wrong_password_the_keyboard_is_in_the_emptied_password_field(rp):
    login = rp.authorize().location
    response = rp.browser.post(login, data={"email": rp.user.email, "password": "not the password"})
    assert response.status_code == 401
    password, email = tag(response, "password"), tag(response, "email")
    assert "autofocus" in password and "autofocus" not in email
    assert 'aria-describedby="signin-message"' in password and 'value=""' in password
    assert f'value="{rp.user.email}"' in email


def test_a_wrong_code_is_cleared_and_tied_to_its_message(rp):
    rp.browser.post(rp.authorize().location, data={"email": rp.user.email, "password": rp.user.password})
    wrong = rp.browser.post("/login/code", data={"code": "000000" if rp.code_now() != "000000" else "111111"})
    assert wrong.status_code == 401
    field = tag(wrong, "code")
    assert 'value=""' in field and "autofocus" in field
    assert 'aria-describedby="code-message"' in field and 'aria-invalid="true"' in field


@pytest.mark.parametrize("typed", ["123 456", "123-456", " 123456 ", "123\u2013456"])
def test_a_code_is_accepted_as_people_paste_it(rp, typed):
    rp.browser.post(rp.authorize().location, data={"email": rp.user.email, "password": rp.user.password})
    code = rp.code_now()
    pasted = typed.replace("123", code[:3]).replace("456", code[3:])
    assert rp.browser.post("/login/code", data={"code": pasted}).status_code == 302


def test_fields_tell_browsers_and_phones_what_they_hold(client, app):
    newcomer = make_user(app, email="willow@example.com", totp=False)
    login = client.get("/login")
    # "webauthn" too where passkeys can sign in: the browser offers them in the field's autofill
    assert re.search(r'autocomplete="username( webauthn)?"', tag(login, "email")) and 'type="email"' in tag(
        login, "email"
    )
    assert 'autocomplete="current-password"' in tag(login, "password")
    register = client.get("/register")
    assert 'autocomplete="name"' in tag(register, "name")
    assert 'autocomplete="new-password"' in tag(register, "password")
    client.post("/login", data={"email": newcomer.email, "password": newcomer.password})
    setup = client.get("/mfa/setup/authenticator")
    code = tag(setup, "code")
    assert (
        'autocomplete="one-time-code"' in code and 'inputmode="numeric"' in code and "maxlength" not in code
    )
    sms = tag(client.get("/mfa/setup/sms"), "phone")
    assert 'autocomplete="tel"' in sms and 'inputmode="tel"' in sms and 'type="tel"' in sms


# -- 15, 16: the 404 page, one format per kind of date ---------------------------------------


def test_the_404_page_speaks_in_the_portals_voice(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "We can't find that page" in words(response) and "portal home" in words(response)
    assert "requested URL was not found on the server" not in words(response)
    assert client.get("/account/mfa/99999999999/remove").status_code == 404


def test_dates_have_one_format_per_kind():
    at = datetime(2026, 12, 3, 8, 38, 12, tzinfo=UTC)
    assert formats.day(at) == "3 December 2026"
    assert formats.moment(at) == "3 December 2026, 08:38 UTC"
    assert formats.time_of_day(at) == "08:38 UTC"


def test_my_details_says_every_moment_the_same_way(rp):
    signed_in(rp)
    text = words(rp.browser.get("/account"))
    assert "Account created 26 November 2026" in text
    moments = re.findall(r"\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d UTC", text)
    assert len(moments) >= 3  # signed in, last active, the activity list
    assert not re.search(r"\b\d\d [A-Z][a-z]{2} \d{4}\b|\(UTC\)", text)  # "03 Dec 2026" and "(UTC)" are gone


# -- 20, 21, 22 ----------------------------------------------------------------------------


def test_authenticator_set_up_opens_the_app_on_a_phone(app, client):
    newcomer = make_user(app, email="willow@example.com", totp=False)
    client.post("/login", data={"email": newcomer.email, "password": newcomer.password})
    setup = client.get("/mfa/setup/authenticator")
    [uri] = re.findall(
        r'<a class="button" href="(otpauth://totp/[^"]+)">Open in authenticator app</a>', body(setup)
    )
    with app.app_context():
        method = db.session.scalars(db.select(MfaMethod).filter_by(user_id=newcomer.id)).one()
        assert uri == mfa.provisioning_uri(method)


def test_the_copy_slips_are_fixed(mail_app, smtp_server):
    """UX 21: the register page's sentence, and a welcome after email codes
    that does not speak of losing a phone."""
    client = mail_app.test_client()
    assert "One account signs you in to every app that uses Login Portal." in words(client.get("/register"))
    newcomer = make_user(mail_app, email="willow@example.com", totp=False)
    client.post("/login", data={"email": newcomer.email, "password": newcomer.password})
    confirm = client.post("/mfa/setup/email", data={"email": "willow.codes@example.com"}).location
    code = re.search(r"\b(\d{6})\b", text_of(smtp_server.last("willow.codes@example.com"))).group(1)
    enrolled = client.get(client.post(confirm, data={"code": code}).location)
    welcome = words(client.get(enrolled.location))
    assert "a code we email to willow.codes@example.com" in welcome
    assert "lose your phone" not in welcome and "if you cannot get into that mailbox" in welcome


def test_the_code_email_links_change_your_password(mail_app, smtp_server, clock):
    user = make_user(mail_app)
    method_id = give_email_method(mail_app, user.id, "buffy.codes@example.org", clock.now)
    clock.advance(seconds=30)
    browser = mail_app.test_client()
    browser.post("/login", data={"email": user.email, "password": user.password})
    browser.post("/login/code/send", data={"method": str(method_id)})
    message = smtp_server.last("buffy.codes@example.org")
    assert re.search(
        r'href="https://op.example.test/forgot-password"[^>]*>change your password now</a>', html_of(message)
    )
    assert "https://op.example.test/forgot-password" in text_of(message)


def test_the_methods_changed_mail_reads_in_even_lines(mail_app, smtp_server):
    """UX 21: the plain-text part had one over-long line and a short one after it."""
    user = make_user(mail_app)
    change = "A new sign-in method (text message codes to +31 6 ****5678) was added"
    with mail_app.app_context():
        from oidc_provider import messages

        messages.mfa_changed(db.session.get(User, user.id), change)
    text = text_of(smtp_server.last(user.email))
    assert " ".join(text.split()).count(f"{change} on your Login Portal account.") == 1
    prose = [line for line in text.splitlines() if "://" not in line and "@" not in line]
    assert max(len(line) for line in prose) <= 76, text


def test_dead_link_pages_do_not_fill_in_the_accounts_address(mail_app, smtp_server, clock):
    """UX 22: whoever holds an old link does not learn the address from it."""
    client = mail_app.test_client()
    password = "a long enough passphrase"
    client.post(
        "/register",
        data={"name": "Bob", "email": "bob@example.com", "password": password, "confirm": password},
    )
    [activation] = [
        u
        for u in re.findall(r"https://\S+", text_of(smtp_server.last("bob@example.com")))
        if "/activate/" in u
    ]
    clock.advance(days=3)
    expired = client.get(urlsplit(activation).path)
    assert expired.status_code == 410 and "This link has expired" in words(expired)
    assert "bob@example.com" not in body(expired)

    user = make_user(mail_app, email="ada@example.com")
    client.post("/forgot-password", data={"email": user.email})
    [reset] = [
        u
        for u in re.findall(r"https://\S+", text_of(smtp_server.last(user.email)))
        if "/reset-password/" in u
    ]
    new = "a brand new passphrase 2027"
    assert client.post(urlsplit(reset).path, data={"password": new, "confirm": new}).status_code == 200
    used = client.get(urlsplit(reset).path)
    assert used.status_code == 410 and "already been used" in words(used)
    assert "ada@example.com" not in body(used)
