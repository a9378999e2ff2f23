"""The journey a person takes through the Login Portal and two of the
platform's apps (Modeler and Forum, the demo RP of examples/demo_rp), in a
real browser: register, activate, set up MFA, single sign-on, trusted
computer, RP-initiated and back-channel logout."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from mailserver import text_of
from playwright.sync_api import Page, expect

from .people import Account, enter_code, register, set_up_authenticator, sign_in_with_password, unique_email
from .servers import DemoApp

BACKCHANNEL_TIMEOUT = 10  # seconds for a logout token to reach an app


def expect_signed_in(page: Page, app: DemoApp, account: Account) -> None:
    expect(page).to_have_url(re.compile(rf"^{re.escape(app.url)}/"))
    expect(page.get_by_role("heading", name=f"Signed in as {account.name}")).to_be_visible()
    expect(page.get_by_text(account.email, exact=True)).to_be_visible()


def expect_signed_out(page: Page, app: DemoApp, heading: str = "You are signed out") -> None:
    """The app's page for a visitor: "You are not signed in" the first time, "You are
    signed out" once a session of this app ended."""
    expect(page).to_have_url(re.compile(rf"^{re.escape(app.url)}/"))
    expect(page.get_by_role("heading", name=heading)).to_be_visible()


def reload_until_signed_out(page: Page, app: DemoApp) -> None:
    """An app learns of a logout through the provider's back-channel, in the background."""
    deadline = time.monotonic() + BACKCHANNEL_TIMEOUT
    signed_out = page.get_by_role("heading", name="You are signed out")
    while True:
        page.goto(app.url)
        if signed_out.is_visible():
            return
        assert time.monotonic() < deadline, f"{app.name} still signed in {BACKCHANNEL_TIMEOUT} s after logout"
        page.wait_for_timeout(200)  # bounded poll of another process's state


class Navigations:
    """The paths of the portal pages the browser asked for (redirects included)."""

    def __init__(self, page: Page, portal: str) -> None:
        self.paths: list[str] = []
        self.portal = portal
        page.on("request", self._seen)

    def _seen(self, request) -> None:
        if request.is_navigation_request() and request.url.startswith(self.portal):
            self.paths.append(urlsplit(request.url).path)

    def since(self, mark: int) -> list[str]:
        return self.paths[mark:]


def sign_in_from(page: Page, app: DemoApp, heading: str = "You are signed out") -> None:
    """Click the app's sign-in button."""
    page.goto(app.url)
    expect_signed_out(page, app, heading)
    page.get_by_role("link", name="Sign in with the Login Portal").click()


def test_a_person_registers_sets_up_mfa_and_signs_in_once_for_every_app(
    page: Page, context, shots, provider, running_demo_apps, mail
):
    modeler, forum = running_demo_apps
    portal = provider.url
    ann = Account("Ann Example", unique_email("ann"))
    visited = Navigations(page, portal)

    # Modeler asks the portal (nobody signed in there) and offers a first-time visitor to sign in.
    page.goto(modeler.url)
    expect_signed_out(page, modeler, "You are not signed in")
    expect(page.get_by_text("signed out")).to_have_count(0)
    shots("modeler-signed-out")
    page.get_by_role("link", name="Sign in with the Login Portal").click()
    page.wait_for_url(f"{portal}/login?**")
    expect(page.get_by_text("to continue to Modeler")).to_be_visible()
    shots("login")

    # Register. A common password is refused with its reason; a strong one is taken.
    page.get_by_role("link", name="Create an account").click()
    page.wait_for_url(f"{portal}/register**")
    shots("register")
    page.get_by_label("Full name").fill(ann.name)
    page.get_by_label("Email address").fill(ann.email)
    page.get_by_label("Password", exact=True).fill("Password2024!")
    page.get_by_label("Repeat the password").fill("Password2024!")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("This password is too common")).to_be_visible()
    shots("register-common-password")
    register(page, shots, ann)

    # The activation link arrives by mail; it works once.
    link = mail.link(ann.email, "Activate", "/activate/")
    mail_tab = context.new_page()  # opened from the mail program, in a new tab
    mail_tab.goto(link)
    expect(mail_tab.get_by_role("heading", name="Your account is active")).to_be_visible()
    shots.page = mail_tab
    shots("activated")
    mail_tab.goto(link)
    expect(mail_tab.get_by_role("heading", name="This link has already been used")).to_be_visible()
    expect(mail_tab.get_by_text("Your account is already active")).to_be_visible()
    shots("activation-link-used")
    mail_tab.close()
    shots.page = page

    # Back in Modeler: sign in. The first sign-in must set up MFA before anything else.
    sign_in_from(page, modeler, "You are not signed in")
    page.wait_for_url(f"{portal}/login?**")
    sign_in_with_password(page, ann)
    page.wait_for_url(f"{portal}/mfa/setup")
    page.goto(f"{portal}/")  # no way around the set-up: the portal is not open yet
    expect(page).to_have_url(re.compile(rf"^{re.escape(portal)}/login"))
    page.goto(f"{portal}/mfa/setup")
    ann.authenticator = set_up_authenticator(page, shots)
    shots("mfa-welcome")

    # The welcome page advises a second method: email codes, checked by a mailed code.
    page.get_by_role("link", name="Add email codes").click()
    expect(page.get_by_role("heading", name="Get codes by email")).to_be_visible()
    expect(page.get_by_label("Email address for codes")).to_have_value(ann.email)
    shots("mfa-email")
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_role("heading", name="Enter the code we're sending")).to_be_visible()
    code = mail.code(ann.email)
    page.get_by_label("6-digit code").fill(ann.authenticator.wrong_code())
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    shots("mfa-email-wrong-code")
    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_contain_text("email codes")
    assert "email codes" in text_of(mail.next(ann.email, "sign-in methods changed"))
    shots("mfa-after-adding-email")

    # Continue: back in Modeler, signed in, with the right name and email.
    page.get_by_role("link", name="Continue").click()
    expect_signed_in(page, modeler, ann)
    shots("modeler-signed-in")

    # Forum: signed in at its first visit, no portal page shown (single sign-on).
    mark = len(visited.paths)
    page.goto(forum.url)
    expect_signed_in(page, forum, ann)
    expect(page.get_by_role("status")).to_contain_text("Single sign-on")
    shown = visited.since(mark)
    assert "/login" not in shown and "/login/code" not in shown, shown
    shots("forum-signed-in")
    page.get_by_role("button", name="Refresh tokens").click()  # the demo's refresh_token grant
    expect(page.get_by_text(re.compile("Tokens refreshed"))).to_be_visible()
    expect_signed_in(page, forum, ann)

    # The portal home lists the apps; sign out everywhere from there.
    page.goto(f"{portal}/")
    expect(page.get_by_role("heading", name="Welcome, Ann Example")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Modeler"))).to_be_visible()
    shots("portal-home")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    shots("portal-signed-out")
    reload_until_signed_out(page, modeler)
    reload_until_signed_out(page, forum)

    # Sign in again, trusting this computer.
    sign_in_from(page, modeler)
    page.wait_for_url(f"{portal}/login?**")
    sign_in_with_password(page, ann)
    page.wait_for_url(f"{portal}/login/code")
    enter_code(page, ann.authenticator.wrong_code())
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    shots("code-wrong")
    enter_code(page, ann.authenticator.code(), trust=True)
    expect_signed_in(page, modeler, ann)

    # The SSO session ends (its cookie is gone) but the computer is trusted: password only.
    context.clear_cookies(name="portal_session")
    mark = len(visited.paths)
    sign_in_from(page, forum)
    page.wait_for_url(f"{portal}/login?**")
    shots("login-trusted-computer")
    sign_in_with_password(page, ann)
    expect_signed_in(page, forum, ann)
    assert "/login/code" not in visited.since(mark), visited.since(mark)

    # Modeler signs out through the portal (RP-initiated logout). Its ID token names the
    # session whose cookie was cleared, not this browser's: the portal asks first, then
    # links back to Modeler, which comes back signed out...
    page.goto(modeler.url)
    expect_signed_in(page, modeler, ann)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign out?")).to_be_visible()
    expect(page.get_by_text("Modeler asks to sign you out")).to_be_visible()
    shots("logout-confirm")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    page.get_by_role("link", name="Back to Modeler").click()
    expect_signed_out(page, modeler)
    expect(page.get_by_text("You signed out at the Login Portal too.")).to_be_visible()
    shots("modeler-after-logout")
    # ...and Forum learnt it by back-channel logout.
    reload_until_signed_out(page, forum)
    shots("forum-after-logout")

    # The logout forgot the trusted computer: the next sign-in asks for a code again.
    sign_in_from(page, modeler)
    page.wait_for_url(f"{portal}/login?**")
    sign_in_with_password(page, ann)
    page.wait_for_url(f"{portal}/login/code")
    expect(page.get_by_label("Trust this computer (skip MFA for a week)")).not_to_be_checked()
    shots("code-after-logout")
    page.get_by_role("button", name=re.compile("Send a code to")).click()
    expect(page.get_by_text(re.compile("We're sending a code to"))).to_be_visible()
    shots("code-by-email")
    enter_code(page, mail.code(ann.email))
    expect_signed_in(page, modeler, ann)

    # My details and Manage MFA show both methods; with two, either may be removed.
    page.goto(f"{portal}/account")
    expect(page.get_by_text(ann.email).first).to_be_visible()
    shots("my-details")
    page.goto(f"{portal}/account/mfa")
    expect(page.get_by_role("heading", name="Manage MFA")).to_be_visible()
    expect(page.get_by_role("link", name="Remove")).to_have_count(2)  # each asks first (UX 11)
    shots("manage-mfa")
