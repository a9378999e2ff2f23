"""Manage MFA as a person uses it after a fresh sign-in: add email and SMS
methods with the codes they receive, replace the authenticator, change an
address or number, remove a method; every change audited, emailed and
ending "trust this computer". Then signing in with an email or SMS code."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from conftest import deliver
from mailserver import text_of
from rp import RP, make_user, query
from rp import TestUser as Person  # not collected as a test class

from oidc_provider import audit, mfa
from oidc_provider.db import db
from oidc_provider.models import MfaMethod, TrustedComputer, User

ACCOUNT_MAIL = "sign-in methods changed"
TARGETS = {
    "email": ("buffy.codes@example.org", "slayer@example.net"),
    "sms": ("+31612345678", "+447400123456"),
}
MASKED = {
    "buffy.codes@example.org": "b***@example.org",
    "slayer@example.net": "s***@example.net",
    "+31612345678": "+31 6 ****5678",
    "+447400123456": "+44 7*** **3456",
}
# what the signed-in owner reads on their own pages (UX defect 9): everything, in full
SHOWN = {
    "buffy.codes@example.org": "buffy.codes@example.org",
    "slayer@example.net": "slayer@example.net",
    "+31612345678": "+31 6 12345678",
    "+447400123456": "+44 7400 123456",
}


@pytest.fixture
def app(mail_app):
    """Every test here reads real mail: the app sends to `smtp_server`."""
    return mail_app


@dataclass
class Devices:
    """Where codes arrive: the SMTP server's inbox and the SMS outbox."""

    app: object
    inbox: object

    def received(self, target: str) -> list[str]:
        """The texts of the messages sent to an address or number, oldest first."""
        if target.startswith("+"):
            deliver(self.app)  # the outbox worker writes the SMS there
            files = sorted(Path(self.app.config["OUTBOX_DIR"], "sms").glob("*.txt"))
            return [t for t in (f.read_text() for f in files) if t.startswith(f"To: {target}\n")]
        return [text_of(m) for m in self.inbox.to(target)]

    def code(self, target: str) -> str:
        """The code in the latest message to `target`."""
        texts = self.received(target)
        assert texts, f"nothing sent to {target}"
        return re.search(r"\b(\d{6})\b", texts[-1]).group(1)

    def account_mails(self, user: Person) -> list[str]:
        """The "sign-in methods changed" notices to the account address."""
        return [text_of(m) for m in self.inbox.to(user.email) if ACCOUNT_MAIL in m["Subject"]]


@pytest.fixture
def devices(app, smtp_server) -> Devices:
    return Devices(app, smtp_server)


def path(response) -> str:
    return urlsplit(response.location).path


def words(html_text: str) -> str:
    """A page's text without its tags (an address sits in a span of its own)."""
    return re.sub(r"<[^>]+>", "", html_text)


def text(response) -> str:
    """The page as a person reads it (entities such as &#39; decoded)."""
    return html.unescape(response.get_data(as_text=True))


def page(browser, url: str = "/account/mfa") -> str:
    response = browser.get(url)
    assert response.status_code == 200, (url, response.status_code, response.location)
    return text(response)


def signed_in(rp: RP, trust: bool = False) -> None:
    """A fresh sign-in (password + code) in the rp's browser."""
    response = rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    assert path(response) == "/login/code"
    code = rp.user.totp.at(rp.clock.now)
    response = rp.browser.post("/login/code", data={"code": code, "trust": "y" if trust else ""})
    assert response.status_code == 302, text(response)
    rp.clock.advance(seconds=30)  # the next code is a new one (replay guard)


def methods_of(app, user: Person) -> list[tuple[str, str | None, bool]]:
    """(kind, target, confirmed) of every method of the user."""
    with app.app_context():
        rows = db.session.get(User, user.id).mfa_methods
        return sorted((m.kind, m.target, m.confirmed_at is not None) for m in rows)


def method_id(app, user: Person, kind: str, target: str | None = None) -> int:
    with app.app_context():
        select = db.select(MfaMethod.id).filter_by(user_id=user.id, kind=kind)
        if target:
            select = select.filter_by(target=target)
        return db.session.scalars(select).one()


def trusted_count(app, user: Person) -> int:
    with app.app_context():
        return db.session.query(TrustedComputer).filter_by(user_id=user.id).count()


def events(app, user: Person, name: str) -> list[dict]:
    with app.app_context():
        return [e.details for e in audit.query(user_id=user.id, events=[name])]


def add_method(browser, devices: Devices, kind: str, target: str, **args) -> object:
    """Ask for codes at `target` on the setup page and confirm with the code received."""
    field = "email" if kind == "email" else "phone"
    response = browser.post(f"/mfa/setup/{kind}", query_string=args, data={field: target})
    assert "/confirm" in path(response), text(response)
    confirm = response.location
    assert SHOWN[target] in page(browser, confirm)
    return browser.post(confirm, data={"code": devices.code(target)})


def give_method(app, devices: Devices, user: Person, kind: str, target: str) -> None:
    """Set up a confirmed email/SMS method without the pages (another test's subject)."""
    with app.app_context():
        method = mfa.start_enrolment(db.session.get(User, user.id), kind, target)
        assert mfa.send_code(method, "enrol").sent
        assert mfa.confirm_enrolment(method, devices.code(target)).ok


# -- adding methods ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["email", "sms"])
def test_adding_a_method_with_the_code_it_receives(app, rp, devices, kind):
    signed_in(rp, trust=True)
    assert trusted_count(app, rp.user) == 1
    target = TARGETS[kind][0]
    assert "Add a method" in page(rp.browser)
    assert "Text message (SMS)" in page(rp.browser, "/mfa/setup")

    response = add_method(rp.browser, devices, kind, target)

    assert path(response) == "/account/mfa"
    shown = page(rp.browser)
    assert f"Done: you can now sign in with {'email' if kind == 'email' else 'text message'} codes to {SHOWN[target]}." in shown
    assert (kind, target, True) in methods_of(app, rp.user)
    assert events(app, rp.user, "mfa_added") == [{"kind": kind, "target": MASKED[target]}]
    [notice] = devices.account_mails(rp.user)
    assert "A new sign-in method" in notice and MASKED[target] in notice and "Trust this computer" in notice
    assert trusted_count(app, rp.user) == 0


def test_a_number_from_an_unsupported_country_is_refused_by_name(app, rp):
    signed_in(rp)
    response = rp.browser.post("/mfa/setup/sms", data={"phone": "+55 11 91234-5678"})
    assert response.status_code == 422
    assert "Numbers from Brazil (+55) can't receive codes" in text(response)
    assert [kind for kind, _, _ in methods_of(app, rp.user)] == ["totp"]


def test_a_wrong_code_does_not_set_up_the_method(app, rp, devices):
    signed_in(rp)
    target = TARGETS["email"][0]
    response = rp.browser.post("/mfa/setup/email", data={"email": target})
    good = devices.code(target)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    refused = rp.browser.post(response.location, data={"code": wrong})
    assert refused.status_code == 401
    assert "4 tries left for this code" in text(refused)
    assert ("email", target, False) in methods_of(app, rp.user)
    assert devices.account_mails(rp.user) == []


# -- replacing the authenticator ----------------------------------------------------------


def new_authenticator(browser) -> tuple[pyotp.TOTP, str]:
    """Manage MFA's Replace: the new app's key from the QR code page, and where
    the page's code form posts."""
    response = browser.get("/mfa/setup/authenticator", query_string={"new": "1"})
    assert path(response) == "/mfa/setup/authenticator"  # a refresh keeps the same key
    response = browser.get(response.location)
    shown = text(response)
    assert "Your current authenticator app keeps working" in shown
    secret = re.search(r'id="secret">([A-Z2-7 ]+)<', shown).group(1).replace(" ", "")
    assert secret in page(browser, "/mfa/setup/authenticator").replace(" ", "")
    action = html.unescape(
        re.search(r'<form method="post" action="(/mfa/setup/authenticator[^"]*)"', shown).group(1)
    )
    return pyotp.TOTP(secret), action


def password_and_code(app, user: Person, code: str, **data) -> object:
    """A sign-in in a browser of its own; the response to the code."""
    browser = app.test_client()
    browser.post("/login", data={"email": user.email, "password": user.password})
    return browser.post("/login/code", data={"code": code, **data})


def test_replacing_the_authenticator_keeps_the_old_one_until_the_new_one_is_confirmed(
    app, rp, devices, clock
):
    signed_in(rp, trust=True)
    page(rp.browser)
    old = rp.user.totp
    new, action = new_authenticator(rp.browser)
    assert [m[2] for m in methods_of(app, rp.user)] == [False, True]  # new pending, old confirmed

    assert password_and_code(app, rp.user, old.at(clock.now)).status_code == 302  # the old one still works
    clock.advance(seconds=30)
    refused = rp.browser.post(action, data={"code": old.at(clock.now)})
    assert refused.status_code == 401  # the old app's code does not confirm the new one

    response = rp.browser.post(action, data={"code": new.at(clock.now)})
    assert path(response) == "/account/mfa"
    assert "Codes from the old one no longer work" in page(rp.browser)
    assert methods_of(app, rp.user) == [("totp", None, True)]
    clock.advance(seconds=30)
    assert password_and_code(app, rp.user, old.at(clock.now)).status_code == 401
    assert password_and_code(app, rp.user, new.at(clock.now)).status_code == 302
    assert events(app, rp.user, "mfa_replaced") == [
        {"kind": "totp", "target": "Authenticator app", "replaced": ["Authenticator app"]}
    ]
    [notice] = devices.account_mails(rp.user)
    assert "Your authenticator app was replaced by a new one" in notice
    assert trusted_count(app, rp.user) == 0


# -- changing an address or number --------------------------------------------------------


@pytest.mark.parametrize("kind", ["email", "sms"])
def test_a_method_of_another_kind_is_not_replaced_but_added_to(app, rp, devices, kind):
    """`replaces` naming the authenticator on the email or SMS page (a hand-made
    link): a method is added, the authenticator stays."""
    signed_in(rp)
    authenticator = method_id(app, rp.user, "totp")
    target = TARGETS[kind][0]
    response = add_method(rp.browser, devices, kind, target, replaces=authenticator)
    assert path(response) == "/account/mfa"
    assert methods_of(app, rp.user) == sorted([("totp", None, True), (kind, target, True)])


@pytest.mark.parametrize("kind", ["email", "sms"])
def test_changing_the_address_or_number_verifies_the_new_one(app, rp, devices, clock, kind):
    old, new = TARGETS[kind]
    give_method(app, devices, rp.user, kind, old)
    clock.advance(seconds=60)
    signed_in(rp, trust=True)
    old_id = method_id(app, rp.user, kind, old)
    label = "Change address" if kind == "email" else "Change number"
    assert f"/mfa/setup/{kind}?replaces={old_id}" in page(rp.browser) and label in page(rp.browser)

    field = "email" if kind == "email" else "phone"
    response = rp.browser.post(f"/mfa/setup/{kind}", query_string={"replaces": old_id}, data={field: new})
    confirm = response.location
    assert confirm, text(response)
    # until the new one is confirmed, sign-in offers only the old one
    pending_id = method_id(app, rp.user, kind, new)
    assert_sign_in_offers(app, rp.user, shown=MASKED[old], hidden=MASKED[new], pending_id=pending_id)

    response = rp.browser.post(confirm, data={"code": devices.code(new)})
    assert path(response) == "/account/mfa"
    assert f"Codes now go to {SHOWN[new]} instead of {SHOWN[old]}" in page(rp.browser)
    assert [m for m in methods_of(app, rp.user) if m[0] == kind] == [(kind, new, True)]
    assert events(app, rp.user, "mfa_replaced") == [
        {"kind": kind, "target": MASKED[new], "replaced": [MASKED[old]]}
    ]
    [notice] = devices.account_mails(rp.user)
    assert f"Your codes now go to {MASKED[new]} instead of {MASKED[old]}" in notice
    assert trusted_count(app, rp.user) == 0

    # the old target receives nothing more: a sign-in sends to the new one
    before = len(devices.received(old))
    clock.advance(seconds=60)
    browser = app.test_client()
    browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    browser.post("/login/code/send", data={"method": str(method_id(app, rp.user, kind, new))})
    assert len(devices.received(old)) == before
    assert "sign in" in devices.received(new)[-1]


def assert_sign_in_offers(app, user: Person, shown: str, hidden: str, pending_id: int) -> None:
    """A sign-in in another browser lists `shown`, never the pending method."""
    browser = app.test_client()
    browser.post("/login", data={"email": user.email, "password": user.password})
    code_page = page(browser, "/login/code")
    assert shown in code_page and hidden not in code_page
    # asking for the pending method by id falls back to a confirmed one; nothing is sent
    assert path(browser.post("/login/code/send", data={"method": str(pending_id)})) == "/login/code"
    response = browser.get(f"/login/code?method={pending_id}")
    assert response.location == "/login/code"
    response = browser.post("/login/code", data={"method": str(pending_id), "code": "123456"})
    assert path(response) == "/login/code"


# -- removing a method ----------------------------------------------------------------------


def test_removing_a_method_needs_another_one(app, rp, devices, clock):
    target = TARGETS["email"][0]
    give_method(app, devices, rp.user, "email", target)
    clock.advance(seconds=60)
    signed_in(rp, trust=True)
    assert page(rp.browser).count(">Remove</a>") == 2

    email_id = method_id(app, rp.user, "email")
    response = rp.browser.post(f"/account/mfa/{email_id}/remove")
    assert response.status_code == 303
    shown = page(rp.browser)
    assert f"Removed: email codes to {SHOWN[target]}." in shown
    assert "Remove</a>" not in shown and "can't be removed" in shown
    assert methods_of(app, rp.user) == [("totp", None, True)]
    assert events(app, rp.user, "mfa_removed") == [{"kind": "email", "target": MASKED[target]}]
    [notice] = devices.account_mails(rp.user)
    assert f"A sign-in method (email codes to {MASKED[target]}) was removed" in notice
    assert trusted_count(app, rp.user) == 0

    # the last one stays, even when asked directly
    response = rp.browser.post(f"/account/mfa/{method_id(app, rp.user, 'totp')}/remove")
    assert response.status_code == 303
    assert "This is your only sign-in method" in page(rp.browser)
    assert methods_of(app, rp.user) == [("totp", None, True)]
    assert len(events(app, rp.user, "mfa_removed")) == 1


def test_a_method_of_someone_else_cannot_be_removed(app, rp, devices):
    from rp import make_user

    other = make_user(app, email="faith@example.com")
    give_method(app, devices, other, "email", "faith.codes@example.org")
    signed_in(rp)
    response = rp.browser.post(f"/account/mfa/{method_id(app, other, 'email')}/remove")
    assert response.status_code == 404
    assert len(methods_of(app, other)) == 2


# -- freshness ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/mfa/setup"),
        ("get", "/mfa/setup/email"),
        ("post", "/mfa/setup/sms"),
        ("get", "/mfa/setup/authenticator?new=1"),
        ("post", "/account/mfa/{id}/remove"),
    ],
)
def test_changes_without_a_fresh_sign_in_go_to_reauthentication(app, rp, devices, clock, method, url):
    give_method(app, devices, rp.user, "email", TARGETS["email"][0])
    signed_in(rp)
    clock.advance(seconds=app.config["REAUTH_MAX_AGE"] + 1)
    shown = page(rp.browser)
    assert "confirm it's you" in shown and "Remove" not in shown and "Add a method" not in shown

    url = url.format(id=method_id(app, rp.user, "email"))
    response = getattr(rp.browser, method)(url, data={"phone": TARGETS["sms"][0]})
    assert path(response) == "/login" and query(response.location)["reauth"] == "1"
    assert len(methods_of(app, rp.user)) == 2  # nothing started, nothing removed
    assert devices.received(TARGETS["sms"][0]) == []


# -- signing in with an email or SMS code -------------------------------------------------------


@pytest.mark.parametrize("kind", ["email", "sms"])
def test_signing_in_with_an_email_or_sms_code(app, rp, devices, clock, kind):
    target = TARGETS[kind][0]
    give_method(app, devices, rp.user, kind, target)
    clock.advance(seconds=60)
    sent_before = len(devices.received(target))
    response = rp.authorize()
    rp.browser.post(response.location, data={"email": rp.user.email, "password": rp.user.password})

    code_page = page(rp.browser, "/login/code")  # the authenticator first; the other offered
    assert f"Send a code to {MASKED[target]}" in code_page
    assert len(devices.received(target)) == sent_before  # sent only when asked
    chosen = str(method_id(app, rp.user, kind))
    response = rp.browser.post("/login/code/send", data={"method": chosen})
    assert query(response.location) == {"method": chosen}
    code_page = page(rp.browser, response.location)
    assert f"We're sending a code to {MASKED[target]}; it usually arrives within a minute." in code_page
    assert f"Enter the 6-digit code we're sending to {MASKED[target]}." in words(code_page)
    assert len(devices.received(target)) == sent_before + 1

    clock.advance(seconds=10)
    response = rp.browser.post("/login/code/send", data={"method": chosen})
    assert "You can ask for a new one in 20 seconds" in page(rp.browser, response.location)
    assert len(devices.received(target)) == sent_before + 1

    code = devices.code(target)
    response = rp.browser.post("/login/code", data={"method": chosen, "code": code})
    claims = rp.id_token(rp.token(rp.code_from(rp.browser.get(response.location))).json["id_token"])
    assert claims["amr"] == (["pwd", "otp", "sms", "mfa"] if kind == "sms" else ["pwd", "otp", "mfa"])

    # the same code again, in another sign-in: used up, and the message says what to do
    refused = password_and_code(app, rp.user, code, method=chosen)
    assert refused.status_code == 401
    assert "That code was already used. Send a new code." in text(refused)


def test_after_adding_email_codes_the_next_sign_in_gets_an_email_code_at_once(app, rp, devices, clock):
    """The resend wait counts only unused sign-in codes: the enrolment code,
    used a moment ago, must not hold back the first sign-in code."""
    signed_in(rp)
    target = TARGETS["email"][0]
    assert path(add_method(rp.browser, devices, "email", target)) == "/account/mfa"
    rp.browser.post("/logout", data={"confirm": "1"})
    clock.advance(seconds=10)  # well within OTP_RESEND_COOLDOWN of the enrolment code

    rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    chosen = str(method_id(app, rp.user, "email"))
    response = rp.browser.post("/login/code/send", data={"method": chosen})
    assert f"We're sending a code to {MASKED[target]}" in page(rp.browser, response.location)
    assert len(devices.received(target)) == 2  # the enrolment code, then this one
    response = rp.browser.post("/login/code", data={"method": chosen, "code": devices.code(target)})
    assert response.status_code == 302

    rp.browser.post("/logout", data={"confirm": "1"})
    rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    response = rp.browser.post("/login/code/send", data={"method": chosen})  # that code is used too
    assert f"We're sending a code to {MASKED[target]}" in page(rp.browser, response.location)
    response = rp.browser.post("/login/code/send", data={"method": chosen})  # this one is not
    assert "You can ask for a new one in 30 seconds" in page(rp.browser, response.location)
    assert len(devices.received(target)) == 3


def test_sign_ins_and_wrong_codes_are_audited_with_their_method(app, rp, devices, clock):
    """The metrics count MFA by method from signin_ok and mfa_failed."""
    target = TARGETS["sms"][0]
    give_method(app, devices, rp.user, "sms", target)
    clock.advance(seconds=60)
    signed_in(rp, trust=True)  # the authenticator
    rp.browser.delete_cookie("portal_session")  # the browser was closed
    rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})  # trusted: no code
    rp.browser.post("/logout", data={"confirm": "1"})  # forgets the trusted computer

    rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    assert rp.browser.post("/login/code", data={"code": not_a_code(*app_codes(rp))}).status_code == 401
    chosen = str(method_id(app, rp.user, "sms"))
    rp.browser.post("/login/code/send", data={"method": chosen})
    code = devices.code(target)
    assert (
        rp.browser.post("/login/code", data={"method": chosen, "code": not_a_code(code)}).status_code == 401
    )
    assert rp.browser.post("/login/code", data={"method": chosen, "code": code}).status_code == 302

    assert [e["method"] for e in events(app, rp.user, "signin_ok")] == ["sms", None, "totp"]  # newest first
    assert [e["method"] for e in events(app, rp.user, "mfa_failed")] == ["sms", "totp"]


def app_codes(rp: RP) -> list[str]:
    """Every code the authenticator would accept now (the adjacent steps too)."""
    return [rp.user.totp.at(rp.clock.now + timedelta(seconds=s)) for s in (-30, 0, 30)]


def not_a_code(*valid: str) -> str:
    """A 6-digit code that is none of `valid`."""
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


# -- a second method during the first sign-in -----------------------------------------------


def link(html_page: str, label: str) -> str:
    """The href of the link or button-link labelled `label`."""
    return html.unescape(re.search(rf'href="([^"]+)"[^>]*>{re.escape(label)}<', html_page).group(1))


def test_a_second_method_added_from_the_welcome_page_leads_back_to_the_app(app, rp, devices, clock):
    newcomer = make_user(app, email="willow@example.com", totp=False)
    response = rp.authorize()
    response = rp.browser.post(
        response.location, data={"email": newcomer.email, "password": newcomer.password}
    )
    assert path(response) == "/mfa/setup"
    secret = re.search(r'id="secret">([A-Z2-7 ]+)<', page(rp.browser, "/mfa/setup/authenticator")).group(1)
    response = rp.browser.post(
        "/mfa/setup/authenticator", data={"code": pyotp.TOTP(secret.replace(" ", "")).at(clock.now)}
    )
    response = rp.browser.get(response.location)  # /login/enrolled: signed in
    welcome = page(rp.browser, response.location)
    assert "a code from your authenticator app" in welcome

    email_setup = link(welcome, "Add email codes")
    target = TARGETS["email"][0]
    response = rp.browser.post(email_setup, data={"email": target})
    response = rp.browser.post(response.location, data={"code": devices.code(target)})
    assert path(response) == "/account/mfa/welcome"
    welcome = page(rp.browser, response.location)
    assert "You have a backup method" in welcome
    assert f"a code we email to {SHOWN[target]}" in words(welcome)
    rp.code_from(rp.browser.get(link(welcome, "Continue")))  # back at the app, with a code
