"""A person who uses only the keyboard (WCAG 2.2 AA, 2.1.1 Keyboard, 2.4.3
Focus Order, 2.4.7 Focus Visible): registers, activates the account from
the emailed link, sets up an authenticator app and signs in, with
`keyboard.press` and `keyboard.type` only, never a click. Every control is
reached with Tab and shows where the focus is; after a refused password or
code the focus is back in the field to type again (UX defect 14)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from .people import Account, Authenticator, Screens, unique_email

MAX_TABS = 40  # more than any page of the portal has controls

FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return {name: "", id: "", visible: false};
  const label = e.labels && e.labels.length ? e.labels[0].innerText : "";
  const name = (e.getAttribute("aria-label") || label || e.innerText || e.value || "").trim();
  const style = getComputedStyle(e);
  const ring = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
  return {name: name.replace(/\\s+/g, " "), id: e.id, visible: ring};
}"""


def focused(page: Page) -> dict:
    return page.evaluate(FOCUSED)


def tab_to(page: Page, name: str | re.Pattern) -> None:
    """Press Tab until the control named `name` has the focus (and shows it)."""
    seen = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        now = focused(page)
        seen.append(now["name"])
        matches = re.search(name, now["name"]) if isinstance(name, re.Pattern) else now["name"] == name
        if matches:
            assert now["visible"], f"{name!r} has the focus but shows no focus ring"
            return
    raise AssertionError(f"{name!r} cannot be reached with Tab on {page.url}; focus went to {seen}")


def test_a_person_registers_activates_sets_up_mfa_and_signs_in_with_the_keyboard_only(
    page: Page, shots: Screens, provider, mail
):
    portal = provider.url
    kim = Account("Kim Keys", unique_email("kim"))
    page.goto(f"{portal}/login")  # typed into the address bar
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert focused(page)["id"] == "email"  # the first field, ready to type
    shots("sign-in")

    tab_to(page, "Create an account")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    shots("register")
    # The skip link comes first (WCAG 2.4.1), and leads past the header.
    page.keyboard.press("Tab")
    assert focused(page)["name"] == "Skip to the main content"
    page.keyboard.press("Enter")
    tab_to(page, "Full name")
    page.keyboard.type(kim.name)
    page.keyboard.press("Tab")
    page.keyboard.type(kim.email)
    page.keyboard.press("Tab")
    page.keyboard.type("short")
    page.keyboard.press("Tab")
    page.keyboard.type("different")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Use at least 12 characters (this one has 5).")).to_be_visible()
    expect(page.get_by_text("The passwords do not match.")).to_be_visible()
    assert focused(page)["id"] == "password"  # the first field in error
    shots("register-refused")
    page.keyboard.type(kim.password)
    page.keyboard.press("Tab")
    tab_to(page, "Repeat the password")
    page.keyboard.type(kim.password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("Check your email"))).to_be_visible()
    shots("check-your-email")

    page.goto(mail.link(kim.email, "Activate", "/activate/"))  # opened from the mail program
    expect(page.get_by_role("heading", name="Your account is active")).to_be_visible()
    shots("activated")
    tab_to(page, "Sign in")
    page.keyboard.press("Enter")

    # A wrong password first: the keyboard is back in the emptied password field.
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.keyboard.type(kim.email)
    page.keyboard.press("Tab")
    page.keyboard.type("not my password at all")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("The email address or password is not right.")
    assert focused(page)["id"] == "password"
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    shots("wrong-password")
    page.keyboard.type(kim.password)
    page.keyboard.press("Enter")

    # Set up the authenticator app: the key is read from the page, as a person reads it.
    expect(page.get_by_role("heading", name="Set up two-step sign-in")).to_be_visible()
    shots("mfa-choose")
    tab_to(page, re.compile(r"^Authenticator app"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
    tab_to(page, "Can't scan it? Enter this key instead")
    page.keyboard.press("Enter")
    secret = page.locator("#secret")
    expect(secret).to_be_visible()
    kim.authenticator = Authenticator(secret.inner_text())
    shots("mfa-authenticator")
    tab_to(page, "6-digit code")
    page.keyboard.type(kim.authenticator.wrong_code())
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    assert focused(page)["id"] == "code"
    expect(page.get_by_label("6-digit code")).to_have_value("")  # cleared, to type anew
    shots("mfa-authenticator-wrong-code")
    page.keyboard.type(kim.authenticator.code())
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your account is protected")).to_be_visible()
    shots("mfa-welcome")
    tab_to(page, "Not now, continue")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Welcome, {kim.name}")).to_be_visible()
    shots("portal-home")

    # Sign out, and sign in again: password, then a code.
    tab_to(page, "Sign out")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    shots("signed-out")
    tab_to(page, "Sign in again")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.keyboard.type(kim.email)
    page.keyboard.press("Tab")
    page.keyboard.type(kim.password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    assert focused(page)["id"] == "code"
    shots("code")
    page.keyboard.type(kim.authenticator.code())
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Welcome, {kim.name}")).to_be_visible()
