"""Dutch and English, as people and apps meet them: the language a page
speaks (the saved choice, the browser's switch, ui_locales, Accept-Language,
English), the switch on every page, emails in the recipient's language (real
SMTP), dates and times in the person's language and the portal's time zone,
and discovery's ui_locales_supported."""

from __future__ import annotations

import html
import re
from datetime import datetime

import pytest
from mailserver import text_of
from rp import RP, make_user
from werkzeug.datastructures import LanguageAccept

from oidc_provider import formats, locales
from oidc_provider.db import db
from oidc_provider.models import User

DUTCH = {"Accept-Language": "nl-NL,nl;q=0.9,en;q=0.5"}


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def lang(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.get_data(as_text=True)).group(1)


def save_locale(app, email: str, locale: str | None) -> None:
    with app.app_context():
        db.session.scalar(db.select(User).filter_by(email=email)).locale = locale
        db.session.commit()


def signed_in(rp: RP, **headers: str) -> None:
    response = rp.browser.post(
        "/login", data={"email": rp.user.email, "password": rp.user.password}, headers=headers
    )
    assert response.status_code == 302 and response.location.endswith("/login/code"), text(response)
    response = rp.browser.post("/login/code", data={"code": rp.code_now()}, headers=headers)
    assert response.status_code == 302, text(response)
    rp.clock.advance(seconds=30)


# --- which language -------------------------------------------------------------------


def test_the_order_is_saved_choice_switch_ui_locales_accept_language_english():
    dutch_browser = LanguageAccept([("nl-NL", 1), ("en", 0.5)])
    assert locales.choose() == "en"
    assert locales.choose(accept=LanguageAccept([("fr", 1)])) == "en"  # no catalog: English
    assert locales.choose(accept=dutch_browser) == "nl"
    assert locales.choose(ui_locales="fr-CA nl en", accept=LanguageAccept([("en", 1)])) == "nl"
    assert locales.choose(chosen="en", ui_locales="nl", accept=dutch_browser) == "en"
    assert locales.choose(saved="nl", chosen="en", ui_locales="en", accept=LanguageAccept([("en", 1)])) == "nl"
    assert locales.choose(saved="en", chosen="nl", ui_locales="nl", accept=dutch_browser) == "en"
    assert locales.choose(saved="xx", chosen="<script>", accept=None) == "en"  # junk is no choice


def test_accept_language_nl_gives_dutch_pages_and_english_stays_the_default(client):
    english = client.get("/login")
    assert lang(english) == "en" and "Forgot your password?" in text(english)
    dutch = client.get("/login", headers=DUTCH)
    assert lang(dutch) == "nl"
    page = text(dutch)
    assert "Wachtwoord vergeten?" in page and "E-mailadres" in page and "Forgot your password?" not in page


def test_the_register_page_speaks_dutch(client):
    page = text(client.get("/register", headers=DUTCH))
    assert "Account aanmaken" in page and "Volledige naam" in page and "Herhaal het wachtwoord" in page
    refused = client.post(
        "/register", data={"name": "", "email": "nope", "password": "x", "confirm": "y"}, headers=DUTCH
    )
    assert refused.status_code == 422
    assert "Vul je volledige naam in." in text(refused) and "De wachtwoorden zijn niet hetzelfde." in text(refused)


def test_ui_locales_nl_on_the_authorization_request_shows_the_sign_in_page_in_dutch(rp):
    response = rp.authorize(ui_locales="fr nl")
    login = rp.browser.get(response.location, headers={"Accept-Language": "en"})
    assert lang(login) == "nl" and "Wachtwoord vergeten?" in text(login)
    plain = RP(rp.app, rp.app.test_client(), rp.clock, rp.user)
    login = plain.browser.get(plain.authorize().location, headers={"Accept-Language": "en"})
    assert lang(login) == "en"


def test_the_code_page_speaks_dutch(rp):
    response = rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password}, headers=DUTCH)
    page = rp.browser.get(response.location, headers=DUTCH)
    assert lang(page) == "nl" and "authenticator-app" in text(page)
    wrong = rp.browser.post("/login/code", data={"code": "000000"}, headers=DUTCH)
    assert "Die code klopt niet." in text(wrong)


def test_the_saved_choice_beats_accept_language_and_ui_locales(app, rp):
    save_locale(app, rp.user.email, "en")
    response = rp.authorize(ui_locales="nl")
    rp.browser.post(response.location, data={"email": rp.user.email, "password": rp.user.password}, headers=DUTCH)
    code_page = rp.browser.get("/login/code", headers=DUTCH)
    assert lang(code_page) == "en"  # the person signing in is known: their choice
    signed_in(rp, **DUTCH)
    assert lang(rp.browser.get("/account", headers=DUTCH)) == "en"
    save_locale(app, rp.user.email, "nl")
    page = rp.browser.get("/account", headers={"Accept-Language": "en"})
    assert lang(page) == "nl" and "Mijn gegevens" in text(page)


def test_my_details_and_manage_mfa_speak_dutch_with_dutch_dates(app, rp, clock):
    save_locale(app, rp.user.email, "nl")
    signed_in(rp)
    details = text(rp.browser.get("/account"))
    assert "Mijn gegevens" in details and "Wachtwoord wijzigen" in details
    assert "26 november 2026" in details and "November" not in details  # the clock's day, in Dutch
    mfa_page = text(rp.browser.get("/account/mfa"))
    assert "Tweestapsverificatie beheren" in mfa_page and "Authenticator-app" in mfa_page


# --- the switch -----------------------------------------------------------------------


def switch_link(page, language: str) -> str:
    """The href of the switch's link to `language` on `page`."""
    return html.unescape(re.search(rf'<a href="(/language\?[^"]*lang={language}[^"]*)"', page.get_data(as_text=True)).group(1))


def test_the_switch_is_on_every_page_and_keeps_the_browser_s_choice(client):
    page = client.get("/login?next=/account")
    link = switch_link(page, "nl")
    assert "next=/login?next%3D/account" in link and 'lang="nl"' in page.get_data(as_text=True)
    switched = client.get(link)
    assert switched.status_code == 303 and switched.location == "/login?next=/account"
    cookie = switched.headers["Set-Cookie"]
    assert "portal_locale=nl" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie  # the issuer is https
    page = client.get("/login", headers={"Accept-Language": "en"})
    assert lang(page) == "nl" and "English" in text(page)  # the way back, in its own language
    client.get("/language", query_string={"lang": "en", "next": "/login"})
    assert lang(client.get("/login", headers=DUTCH)) == "en"


def test_the_switch_saves_the_choice_to_the_signed_in_account(app, rp):
    signed_in(rp)
    switched = rp.browser.get(switch_link(rp.browser.get("/account"), "nl"))
    assert switched.status_code == 303 and switched.location == "/account"
    with app.app_context():
        assert db.session.get(User, rp.user.id).locale == "nl"
    other = RP(app, app.test_client(), rp.clock, rp.user)  # another browser, no cookie
    signed_in(other, **{"Accept-Language": "en"})
    assert lang(other.browser.get("/account", headers={"Accept-Language": "en"})) == "nl"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "/\t/evil"])
def test_the_switch_never_leaves_the_portal(client, target):
    switched = client.get("/language", query_string={"lang": "nl", "next": target})
    assert switched.status_code == 303 and switched.location == "/"


def test_the_switch_refuses_a_language_it_does_not_offer(client):
    refused = client.get("/language", query_string={"lang": "fr", "next": "/login"})
    assert refused.status_code == 400 and "portal_locale" not in refused.headers.get("Set-Cookie", "")
    assert "Choose one of the languages on offer." in text(refused)


def test_only_a_link_with_the_session_s_csrf_token_saves_to_the_account(app, rp):
    signed_in(rp)
    app.config["WTF_CSRF_ENABLED"] = True  # signed in above without tokens; checked from here on
    forged = rp.browser.get("/language", query_string={"lang": "nl", "next": "/account", "csrf_token": "forged"})
    assert forged.status_code == 400 and "portal_locale" not in forged.headers.get("Set-Cookie", "")
    with app.app_context():
        assert db.session.get(User, rp.user.id).locale is None
    switched = rp.browser.get(switch_link(rp.browser.get("/account"), "nl"))  # the page's own link
    assert switched.status_code == 303 and "portal_locale=nl" in switched.headers["Set-Cookie"]
    with app.app_context():
        assert db.session.get(User, rp.user.id).locale == "nl"


def test_a_visitor_s_switch_link_is_the_same_for_everyone(app):
    """Pages for people not signed in carry nothing per session (they must not
    tell an address with an account from one without): the link only sets the
    browser's cookie."""
    first, second = app.test_client(), app.test_client()
    assert switch_link(first.get("/login"), "nl") == switch_link(second.get("/login"), "nl")
    assert "csrf_token" not in switch_link(first.get("/login"), "nl")


def test_the_switch_never_repeats_a_return_path_that_leads_away(client):
    page = client.get("/login", query_string={"next": "/\t/evil.example", "tx": "abc"})
    link = switch_link(page, "nl")
    assert "evil.example" not in link and "tx%3Dabc" in link


# --- registration and emails ------------------------------------------------------------


def test_registration_saves_the_page_s_language_and_the_activation_mail_speaks_it(mail_app, smtp_server):
    client = mail_app.test_client()
    form = {"name": "Anne de Vries", "email": "anne@example.nl", "password": "een lange zin als wachtwoord"}
    response = client.post("/register", data={**form, "confirm": form["password"]}, headers=DUTCH)
    assert response.status_code == 303
    with mail_app.app_context():
        assert db.session.scalar(db.select(User).filter_by(email="anne@example.nl")).locale == "nl"
    mail = smtp_server.last("anne@example.nl")
    assert mail["Subject"] == "Activeer je Login Portal-account"
    body = text_of(mail)
    assert "Welkom bij Login Portal." in body and "De link werkt één keer, binnen 48 uur." in body


def test_mail_speaks_the_recipient_s_language_whoever_asks(mail_app, smtp_server):
    make_user(mail_app, email="anne@example.nl", name="Anne de Vries")
    make_user(mail_app, email="buffy@example.com")
    save_locale(mail_app, "anne@example.nl", "nl")
    client = mail_app.test_client()
    for email in ("anne@example.nl", "buffy@example.com"):
        # an English page asks for both: each mail speaks its recipient's language
        client.post("/forgot-password", data={"email": email}, headers={"Accept-Language": "en"})
    dutch = smtp_server.last("anne@example.nl")
    assert dutch["Subject"] == "Stel een nieuw wachtwoord in voor Login Portal"
    assert "Hallo Anne de Vries," in text_of(dutch) and 'lang="nl"' in dutch.get_body(("html",)).get_content()
    english = smtp_server.last("buffy@example.com")
    assert english["Subject"] == "Set a new password for Login Portal"
    assert "Hello Buffy Summers," in text_of(english)


def test_an_email_code_goes_out_in_the_account_s_language(mail_app, smtp_server, clock):
    from oidc_provider import mfa

    person = make_user(mail_app, email="anne@example.nl", name="Anne de Vries")
    save_locale(mail_app, person.email, "nl")
    with mail_app.app_context():
        user = db.session.get(User, person.id)
        method = mfa.start_enrolment(user, "email", "anne.codes@example.nl")
        assert mfa.send_code(method, "enrol").message_id
    mail = smtp_server.last("anne.codes@example.nl")
    assert mail["Subject"] == "Je Login Portal-code"
    assert "10 minuten" in text_of(mail)


def test_an_sms_code_goes_out_in_the_account_s_language(make_app, tmp_path):
    from oidc_provider import mfa

    app = make_app(SMS_ALLOWED_REGIONS="NL")
    person = make_user(app, email="anne@example.nl", name="Anne de Vries")
    save_locale(app, person.email, "nl")
    with app.app_context():
        user = db.session.get(User, person.id)
        method = mfa.start_enrolment(user, "sms", "+31612345678")
        mfa.send_code(method, "enrol")
    app.extensions["outbox_worker"].run_until_idle()
    [sms] = (tmp_path / "instance" / "outbox" / "sms").glob("*.txt")
    assert "is je Login Portal-code om" in sms.read_text() and "10 minuten" in sms.read_text()


# --- dates, times, discovery ---------------------------------------------------------------


def test_dates_and_times_one_format_per_kind_in_the_portal_s_zone(make_app):
    app = make_app(TIME_ZONE="Europe/Amsterdam")
    winter = datetime(2026, 12, 3, 8, 38)  # stored as naive UTC: 09:38 in Amsterdam
    with app.test_request_context(headers={"Accept-Language": "nl"}):
        assert formats.day(winter) == "3 december 2026"
        assert formats.moment(winter) == "3 december 2026 om 09:38"
        assert formats.time_of_day(winter) == "09:38"
        assert formats.duration(48 * 3600) == "48 uur"
        assert formats.relative(47) == "over 47 seconden"
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert formats.moment(winter) == "3 December 2026, 09:38"
        assert formats.moment(datetime(2026, 7, 1, 8, 38)) == "1 July 2026, 10:38"  # summer time
        assert formats.relative(47) == "in 47 seconds"
    with make_app(TIME_ZONE="UTC").test_request_context():
        assert formats.moment(winter) == "3 December 2026, 08:38 UTC"  # named only when it is the zone


def test_discovery_lists_the_languages_of_the_pages(client):
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["ui_locales_supported"] == ["en", "nl"]
    assert "claims_locales_supported" not in meta  # claim values are what people typed, in no language of ours


def test_the_form_librarys_own_messages_follow_the_page_language(app):
    """WTForms' built-in messages (read from its catalogue once per language)
    speak each request's language, whichever came first."""
    from oidc_provider.forms import ChooseMethodForm

    seen = []
    for language in ("nl", "en", "nl"):
        with app.test_request_context("/", method="POST", data={"method": "x"}, headers={"Accept-Language": language}):
            form = ChooseMethodForm(meta={"csrf": False})
            form.method.choices = [("email", "Email")]
            form.validate()
            seen.append(form.method.errors[0])
    assert seen == ["Ongeldige keuze.", "Not a valid choice.", "Ongeldige keuze."]
