"""The UX walk-through's defects (2026-12-03), each seen fixed in a real
browser and photographed at 1280 and 360 px; the screenshot names start
with the defect's number (test-artifacts/screenshots/<test>/NN-<defect>-…).
Layout (a phone's width), focus and the countdown are checked here; the
words and statuses in tests/test_walkthrough_pages.py."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from mailserver import free_port
from playwright.sync_api import Locator, Page, expect

from .conftest import create_account, new_context
from .people import Account, Authenticator, Screens, enter_code, sign_in_with_password
from .servers import Provider, provider_process
from .test_e2e_pages import authorize_url, photo

NARROW = {"width": 360, "height": 740}
WIDE = {"width": 1280, "height": 800}


def on_one_line(items: Locator) -> None:
    """Every address or number shown is on one line (UX 17)."""
    assert items.count() > 0
    for i in range(items.count()):
        lines = items.nth(i).evaluate(
            "e => e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)"
        )
        if lines >= 1.5:
            items.page.screenshot(path="/tmp/ux-broken.png", full_page=True)
        assert lines < 1.5, f"{items.nth(i).inner_text()!r} is broken over {lines:.1f} lines"


def inside_the_window(control: Locator) -> None:
    """Visible, and within a 360 px window without scrolling sideways (UX 4)."""
    expect(control).to_be_visible()
    box = control.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"], box


def set_up_email_first(page: Page, shots: Screens, mail, account: Account, codes_to: str) -> None:
    """The first sign-in sets up email codes (to another address) as its first method."""
    expect(page.get_by_role("heading", name="Set up two-step sign-in")).to_be_visible()
    page.get_by_role("link", name=re.compile("^Email")).click()
    page.get_by_label("Email address for codes").fill(codes_to)
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_role("heading", name="Enter the code we're sending")).to_be_visible()
    expect(page.get_by_text(f"code we're sending to {codes_to}.")).to_be_visible()  # UX 9: in full
    # UX 7: "send a new code" under the field, disabled while its countdown runs
    resend = page.get_by_role("button", name="send a new code")
    countdown = page.locator("#resend-wait [data-countdown]")
    expect(resend).to_be_disabled()
    before = countdown.inner_text()
    expect(countdown).not_to_have_text(before)  # it counts down, live
    assert page.get_by_label("6-digit code").bounding_box()["y"] < resend.bounding_box()["y"]
    photo(shots, "07-enrol-send-a-new-code-counts-down")
    page.get_by_label("6-digit code").fill(mail.code(codes_to))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Your account is protected")).to_be_visible()
    # UX 21: an email-first welcome does not speak of a lost phone
    expect(page.get_by_text("if you cannot get into that mailbox")).to_be_visible()
    expect(page.get_by_text("lose your phone")).to_have_count(0)
    photo(shots, "21-welcome-after-email-codes")


def test_a_first_sign_in_from_an_app_can_be_cancelled_back_to_it(
    page: Page, shots: Screens, provider, browser, mail, node_client, rp_callback
):
    """UX 3 and 10: Cancel on the sign-in page and during the first set-up returns to
    the app, which hears access_denied with its state and the issuer."""
    account = create_account(provider, browser, mail, "cancelling")
    redirect_uri = node_client["redirect_uris"][0]
    app_name = node_client["name"]
    page.goto(authorize_url(provider.url, node_client["client_id"], redirect_uri))
    expect(page.get_by_text(f"to continue to {app_name}")).to_be_visible()
    expect(page.get_by_role("button", name=f"Cancel and go back to {app_name}")).to_be_visible()
    photo(shots, "10-sign-in-with-a-way-back-to-the-app")
    sign_in_with_password(page, account)
    expect(page.get_by_role("heading", name="Set up two-step sign-in")).to_be_visible()
    expect(page.get_by_text(f"to continue to {app_name}")).to_be_visible()
    photo(shots, "03-first-set-up-keeps-the-app")
    page.get_by_role("button", name=f"Cancel and go back to {app_name}").click()
    page.wait_for_url(f"{redirect_uri}?**")
    _, answer = rp_callback.last(urlsplit(redirect_uri).path)
    assert answer["error"] == "access_denied" and answer["iss"] == provider.url and answer["state"]
    assert "code" not in answer


def test_the_authorize_error_page_and_registration_errors(page: Page, shots: Screens, provider, demo_apps):
    """UX 10: a known app with a redirect_uri it did not register: a page, and a way
    back to the app's registered home. UX 8: every password problem at once."""
    modeler = demo_apps[0]
    page.goto(authorize_url(provider.url, modeler.client_id, "http://127.0.0.1:9/not-registered"))
    expect(page.get_by_role("heading", name="This sign-in link does not work")).to_be_visible()
    expect(page.get_by_role("link", name="Back to Modeler")).to_have_attribute("href", f"{modeler.url}/")
    photo(shots, "10-authorize-error-back-to-the-app")

    page.goto(f"{provider.url}/register")
    page.get_by_label("Full name").fill("Eight Problems")
    page.get_by_label("Email address").fill("eight@example.com")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Repeat the password").fill("different")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Use at least 12 characters (this one has 5).")).to_be_visible()
    expect(page.get_by_text("The passwords do not match.")).to_be_visible()
    expect(page.get_by_label("Full name")).to_have_value("Eight Problems")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()  # UX 14: the first field in error
    photo(shots, "08-register-every-problem-at-once")


@pytest.fixture(scope="module")
def provider_with_cooldown(e2e_folder, smtp, node_client) -> Iterator[Provider]:
    """A provider with the shipped wait before another code is sent (OTP_RESEND_COOLDOWN),
    which the session's provider lifts for speed."""
    folder = e2e_folder / "with-cooldown"
    with provider_process(folder, free_port(), smtp.port, [node_client], OTP_RESEND_COOLDOWN="30") as running:
        yield running


def test_a_person_with_two_methods_on_a_phone_and_at_a_desk(
    page: Page, shots: Screens, provider_with_cooldown: Provider, browser, mail
):
    """UX 2, 4, 5, 6, 7, 9, 11, 13, 16, 17, 19, 20 on one account: email codes first,
    then an authenticator app; My details with another browser signed in and trusted."""
    provider = provider_with_cooldown
    portal = provider.url
    account = create_account(provider, browser, mail, "twomethods")
    codes_to = f"codes.{secrets.token_hex(3)}@example.com"  # another address, of a usual length
    page.goto(f"{portal}/login")
    sign_in_with_password(page, account)
    page.get_by_role("link", name=re.compile("^Authenticator app")).click()
    expect(page.get_by_role("link", name="Open in authenticator app")).to_have_attribute(
        "href", re.compile(r"^otpauth://totp/")
    )
    photo(shots, "20-authenticator-open-in-app")  # at 360 px: the link a phone follows
    page.get_by_role("link", name="Choose another method").click()
    set_up_email_first(page, shots, mail, account, codes_to)
    page.get_by_role("link", name="Add an authenticator app").click()
    expect(page.get_by_role("navigation", name="Account")).to_be_visible()  # UX 13: signed in now
    page.get_by_text("Can't scan it? Enter this key instead").click()
    account.authenticator = Authenticator(page.locator("#secret").inner_text())
    page.get_by_label("6-digit code").fill(account.authenticator.code())
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="You have a backup method")).to_be_visible()
    page.goto(f"{portal}/account/mfa")

    # Manage MFA: the owner's address in full and whole; removing asks first.
    expect(page.get_by_text(codes_to)).to_be_visible()
    page.set_viewport_size(NARROW)
    on_one_line(page.locator("main .address, main .nowrap"))
    page.set_viewport_size(WIDE)
    photo(shots, "09-17-manage-mfa-full-addresses")
    page.get_by_role("link", name="Add a method").click()
    expect(page.get_by_role("heading", name="Add a sign-in method")).to_be_visible()
    expect(page.get_by_role("navigation", name="Account")).to_be_visible()
    assert page.title() == "Add a sign-in method · Login Portal"
    photo(shots, "13-add-a-method-with-the-navigation")
    page.get_by_role("link", name="Back to Manage MFA").click()
    page.get_by_role("link", name=f"Remove email codes to {codes_to}").click()
    expect(page.get_by_role("heading", name="Remove this sign-in method?")).to_be_visible()
    photo(shots, "11-remove-asks-first")
    page.get_by_role("link", name="Keep it").click()
    expect(page.get_by_text(codes_to)).to_be_visible()

    # Another browser signs in and trusts its computer: My details lists it, with its buttons.
    other = new_context(browser)
    try:
        elsewhere = other.new_page()
        elsewhere.goto(f"{portal}/login")
        sign_in_with_password(elsewhere, account)
        enter_code(elsewhere, account.authenticator.code(), trust=True)
        expect(elsewhere.get_by_role("heading", name=f"Welcome, {account.name}")).to_be_visible()
    finally:
        other.close()
    page.goto(f"{portal}/account")
    page.set_viewport_size(NARROW)
    inside_the_window(page.get_by_role("button", name=re.compile("^Revoke")))
    inside_the_window(page.get_by_role("button", name=re.compile("^Sign out .")))
    on_one_line(page.locator("main .address"))
    page.set_viewport_size(WIDE)
    expect(page.get_by_text(re.compile(r"^\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d UTC$")).first).to_be_visible()
    photo(shots, "04-16-17-my-details-on-a-phone")
    page.get_by_role("link", name="See all account activity").click()
    expect(page.get_by_role("heading", name="Account activity")).to_be_visible()
    expect(page.get_by_text("Sign-in method added: authenticator app")).to_be_visible()
    photo(shots, "19-account-activity")

    # Sign in again with an email code: "Send a new code" under the field; then the way
    # on when no code can be had; then wrong codes, a warning and the lockout.
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{portal}/login")
    sign_in_with_password(page, account)
    page.get_by_role("button", name=re.compile("^Send a code to")).click()
    expect(page.get_by_text(re.compile("We.re sending a code to"))).to_be_visible()
    resend = page.get_by_role("button", name="send a new code")
    expect(resend).to_be_disabled()
    assert page.get_by_label("6-digit code").bounding_box()["y"] < resend.bounding_box()["y"]
    photo(shots, "07-sign-in-send-a-new-code-below-the-field")
    page.get_by_text("Can't use any of these?").click()
    write = page.get_by_role("link", name="Write to support")
    expect(write).to_have_attribute("href", re.compile(r"^mailto:support@localhost\?subject=.+&body=.+"))
    photo(shots, "02-cant-use-any-of-these")
    # A code pasted from a message, with its words and spaces, keeps its six digits.
    field = page.get_by_label("6-digit code")
    field.evaluate(
        """e => { const data = new DataTransfer(); data.setData("text/plain", "Your code: 482 913");
                  e.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true})); }"""
    )
    expect(field).to_have_value("482913")
    for attempt in range(4):
        enter_code(page, account.authenticator.wrong_code())
        expect(page.get_by_role("alert")).to_contain_text("That code is not right")
        expect(page.get_by_label("6-digit code")).to_be_focused()  # UX 14
        expect(page.get_by_label("6-digit code")).to_have_value("")
    expect(page.get_by_role("alert")).to_contain_text("1 try left before a lockout of 1 minute")
    photo(shots, "06-one-try-left")
    enter_code(page, account.authenticator.wrong_code())
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"try again in \d+ seconds"))
    expect(page.get_by_role("button", name=re.compile("Send"))).to_have_count(0)  # UX 5: nothing sent
    expect(page.get_by_label("6-digit code")).to_have_count(0)
    photo(shots, "05-06-code-page-during-a-lockout")


@pytest.fixture(scope="module")
def provider_never_fresh(e2e_folder, smtp, node_client) -> Iterator[Provider]:
    """A provider whose sign-ins never count as fresh (REAUTH_MAX_AGE=0): Manage MFA as
    a person sees it five minutes after signing in."""
    folder = e2e_folder / "never-fresh"
    with provider_process(folder, free_port(), smtp.port, [node_client], REAUTH_MAX_AGE="0") as running:
        yield running


def test_manage_mfa_after_the_re_authentication_window(
    page: Page, shots: Screens, provider_never_fresh: Provider, browser, mail
):
    """UX 12: the banner adds a method; a visible "Confirm it's you to make changes"."""
    portal = provider_never_fresh.url
    account = create_account(provider_never_fresh, browser, mail, "stale")
    page.goto(f"{portal}/login")
    sign_in_with_password(page, account)
    page.get_by_role("link", name=re.compile("^Authenticator app")).click()
    page.get_by_text("Can't scan it? Enter this key instead").click()
    account.authenticator = Authenticator(page.locator("#secret").inner_text())
    page.get_by_label("6-digit code").fill(account.authenticator.code())
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("link", name="Not now, continue").click()
    page.goto(f"{portal}/account/mfa")
    expect(page.get_by_role("link", name="Add a method")).to_have_attribute("href", "/mfa/setup")
    confirm = page.get_by_role("link", name="Confirm it's you to make changes")
    expect(confirm).to_be_visible()
    expect(page.get_by_role("link", name="Replace")).to_have_count(0)
    photo(shots, "12-manage-mfa-confirm-it-is-you")
    confirm.click()
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
