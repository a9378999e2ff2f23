"""A Dutch person's journey on a phone (360 px): a browser that asks for
Dutch gets every page and email in Dutch, from registering to Manage MFA,
and the switch at the top of every page changes the language and keeps it.
Every page is photographed (and, with the harness's checks, tested for
accessibility) in Dutch."""

from __future__ import annotations

import re
import shutil

from mailserver import links, text_of
from playwright.sync_api import Page, expect

from .conftest import SCREENSHOTS
from .people import Account, Authenticator, Mailbox, Screens, unique_email

PHONE = {"width": 360, "height": 740}


def test_a_dutch_person_registers_sets_up_mfa_and_manages_it_in_dutch(browser, provider, mail: Mailbox, request):
    context = browser.new_context(viewport=PHONE, locale="nl-NL")
    try:
        page = context.new_page()
        folder = SCREENSHOTS / re.sub(r"[^\w-]+", "-", request.node.name).strip("-")
        shutil.rmtree(folder, ignore_errors=True)
        shots = Screens(folder, page)
        _journey(page, shots, provider.url, mail)
    finally:
        context.close()


def _journey(page: Page, shots: Screens, portal: str, mail: Mailbox) -> None:
    anne = Account("Anne de Vries", unique_email("anne"))

    page.goto(f"{portal}/register")
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    expect(page.get_by_role("heading", name="Account aanmaken")).to_be_visible()
    shots("registreren")
    page.get_by_label("Volledige naam").fill(anne.name)
    page.get_by_label("E-mailadres").fill(anne.email)
    page.get_by_label("Wachtwoord", exact=True).fill(anne.password)
    page.get_by_label("Herhaal het wachtwoord").fill(anne.password)
    page.get_by_role("button", name="Account aanmaken").click()
    expect(page.get_by_role("heading", name=re.compile("Kijk in je e-mail"))).to_be_visible()
    shots("kijk-in-je-email")

    message = mail.next(anne.email, "Activeer")
    assert "Welkom bij" in text_of(message), text_of(message)
    page.goto(next(u for u in links(message) if "/activate/" in u))
    expect(page.get_by_role("heading", name="Je account is actief")).to_be_visible()
    shots("account-actief")

    page.get_by_role("link", name="Inloggen").click()
    expect(page.get_by_role("heading", name="Inloggen")).to_be_visible()
    shots("inloggen")
    page.get_by_label("E-mailadres").fill(anne.email)
    page.get_by_label("Wachtwoord", exact=True).fill(anne.password)
    page.get_by_role("button", name="Inloggen", exact=True).click()

    expect(page.get_by_role("heading", name="Tweestapsverificatie instellen")).to_be_visible()
    shots("tweestapsverificatie-kiezen")
    page.get_by_role("link", name=re.compile("Authenticator-app")).click()
    page.get_by_text(re.compile("Lukt scannen niet")).click()
    secret = page.locator("#secret")
    expect(secret).to_be_visible()
    app = Authenticator(secret.inner_text())
    shots("authenticator-app")
    page.get_by_label("Code van 6 cijfers").fill(app.wrong_code())
    page.get_by_role("button", name="Bevestigen").click()
    expect(page.get_by_role("alert")).to_contain_text("Die code klopt niet")
    shots("authenticator-app-verkeerde-code")
    page.get_by_label("Code van 6 cijfers").fill(app.code())
    page.get_by_role("button", name="Bevestigen").click()
    expect(page.get_by_role("heading", name="Je account is beveiligd")).to_be_visible()
    shots("beveiligd")

    page.goto(f"{portal}/account")
    expect(page.get_by_role("heading", name="Mijn gegevens", exact=True)).to_be_visible()
    shots("mijn-gegevens")
    page.goto(f"{portal}/account/mfa")
    expect(page.get_by_role("heading", name="Tweestapsverificatie beheren")).to_be_visible()
    shots("tweestapsverificatie-beheren")

    # the switch: English, on the same page, kept for the account; then back
    page.get_by_role("link", name="English").click()
    expect(page).to_have_url(f"{portal}/account/mfa")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Manage MFA")).to_be_visible()
    shots("manage-mfa-english")
    page.get_by_role("link", name="Nederlands").click()
    expect(page.get_by_role("heading", name="Tweestapsverificatie beheren")).to_be_visible()
