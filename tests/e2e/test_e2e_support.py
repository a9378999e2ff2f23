"""What goes wrong, and what support does about it, seen in the browser: an
expired activation link, the last MFA method that cannot be removed, and an
MFA reset from the command line followed by a new enrolment."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from mailserver import free_port
from playwright.sync_api import Page, expect

from .people import Account, enter_code, register, set_up_authenticator, sign_in_with_password, unique_email
from .servers import Provider, provider_process


@pytest.fixture(scope="module")
def provider_with_instant_expiry(e2e_folder, smtp, node_client) -> Iterator[Provider]:
    """A second provider whose activation links expire at once (ACTIVATION_LIFETIME=0), and
    may mail the same address again at once (a real expired link is two days old)."""
    folder = e2e_folder / "instant-expiry"
    settings = {"ACTIVATION_LIFETIME": "0", "ACCOUNT_MAIL_COOLDOWN": "0"}
    with provider_process(folder, free_port(), smtp.port, [node_client], **settings) as provider:
        yield provider


def test_an_expired_activation_link_says_so_and_sends_a_new_one(
    page: Page, shots, provider_with_instant_expiry: Provider, mail
):
    portal = provider_with_instant_expiry.url
    bob = Account("Bob Late", unique_email("bob"))
    page.goto(f"{portal}/register")
    register(page, shots, bob)

    page.goto(mail.link(bob.email, "Activate", "/activate/"))
    expect(page.get_by_role("heading", name="This link has expired")).to_be_visible()
    expect(page.get_by_label("Email address")).to_have_value("")  # UX 22: an old link does not tell the address
    shots("activation-link-expired")
    page.get_by_label("Email address").fill(bob.email)
    page.get_by_role("button", name="Send me a new link").click()
    expect(page.get_by_role("heading", name=re.compile("Check your email"))).to_be_visible()
    shots("new-link-sent")
    assert mail.link(bob.email, "Activate", "/activate/")

    page.goto(f"{portal}/login")
    sign_in_with_password(page, bob)
    expect(page.get_by_role("alert")).to_contain_text("activat")
    shots("sign-in-not-activated")


def sign_in_at_portal(page: Page, provider: Provider, account: Account) -> None:
    page.goto(f"{provider.url}/login")
    sign_in_with_password(page, account)
    page.wait_for_url(f"{provider.url}/login/code")
    enter_code(page, account.authenticator.code())
    expect(page.get_by_role("heading", name=f"Welcome, {account.name}")).to_be_visible()


def test_the_last_mfa_method_cannot_be_removed(page: Page, shots, provider: Provider, enrolled_account):
    sign_in_at_portal(page, provider, enrolled_account)
    shots("portal-home-one-method")
    page.get_by_role("link", name="My details").click()
    expect(page.get_by_role("heading", name="My details")).to_be_visible()
    shots("my-details-one-method")
    page.get_by_role("link", name="Change MFA information").click()
    expect(page.get_by_role("heading", name="Manage MFA")).to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text="Authenticator app")).to_have_count(1)
    expect(page.get_by_role("link", name="Remove")).to_have_count(0)
    expect(page.get_by_text("Your only method can't be removed")).to_be_visible()
    shots("manage-mfa-one-method")


def test_support_resets_mfa_and_the_next_sign_in_sets_it_up_again(
    page: Page, shots, provider: Provider, enrolled_account
):
    reason = "Lost phone; identity checked by phone call"
    reset = provider.cli("mfa", "reset", enrolled_account.email, "--reason", reason)
    if provider.lacks(reset):
        pytest.skip("`flask --app oidc_provider mfa reset` does not exist yet")
    assert reset.returncode == 0, reset.stderr
    audit = provider.cli("audit", "show", "--user", enrolled_account.email)
    assert reason in audit.stdout, audit.stdout

    page.goto(f"{provider.url}/login")
    sign_in_with_password(page, enrolled_account)
    page.wait_for_url(f"{provider.url}/mfa/setup")
    shots("mfa-setup-after-reset")
    set_up_authenticator(page)
    page.get_by_role("link", name="Not now, continue").click()
    expect(page.get_by_role("heading", name=f"Welcome, {enrolled_account.name}")).to_be_visible()
