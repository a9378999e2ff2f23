"""Every page the journey does not pass through, reached the way a person
reaches it and photographed at 1280 and 360 px (issue 7): forgot and reset
password, a new activation link, too many emails, consent, the /authorize
error and "start again" pages, SMS set-up, change password, "Confirm it's
you" (re-authentication and step-up), sign out, and the 404 page.

Each page is checked for what a person reads on it and for not being wider
than a phone's window."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import yaml
from mailserver import free_port
from playwright.sync_api import Page, expect

from .conftest import create_account
from .people import (
    TOO_WIDE,
    Account,
    Authenticator,
    Screens,
    enter_code,
    set_up_authenticator,
    sign_in_with_password,
)
from .servers import SERVE, CallbackServer, Provider, provider_env, running, url

ACR_MFA = "urn:login-portal:acr:mfa"


def photo(shots: Screens, name: str) -> None:
    """Photograph the page at both widths; it must fit the window at each."""
    before = len(TOO_WIDE)
    shots(name)
    assert TOO_WIDE[before:] == [], f"{name} is wider than the window: {TOO_WIDE[before:]}"


def authorize_url(portal: str, client_id: str, redirect_uri: str, **extra: str) -> str:
    """An authorization request as an RP library builds it (code flow, PKCE S256)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid profile email",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{portal}/authorize?{urlencode(params)}"


def sign_in_and_set_up(page: Page, account: Account) -> Authenticator:
    """On the sign-in page of an account without MFA: password, then the first
    method (an authenticator app); ends on "Your account is protected"."""
    sign_in_with_password(page, account)
    page.wait_for_url("**/mfa/setup")
    return set_up_authenticator(page)


# -- a provider of this module's own: a low email limit and an app that asks for consent ---


@pytest.fixture(scope="module")
def consent_app(rp_callback: CallbackServer) -> dict:
    """A third-party app (first_party: false): people approve it once."""
    return {
        "client_id": "reports",
        "name": "Reports",
        "description": "Usage reports for your apps.",
        "home_url": f"{rp_callback.url}/reports",
        "redirect_uris": [f"{rp_callback.url}/reports/callback"],
        "token_endpoint_auth_method": "none",
        "scopes": ["openid", "profile", "email"],
        "first_party": False,
    }


@pytest.fixture(scope="module")
def strict_provider(e2e_folder, smtp, consent_app) -> Iterator[Provider]:
    """A second provider, for the whole module: one email per hour from one
    network (RATELIMIT_EMAIL, per client IP), and the third-party Reports app. Started like `provider_process`
    does, which cannot lower RATELIMIT_EMAIL (`provider_env` sets it itself)."""
    folder = e2e_folder / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    clients_file = folder / "clients.yaml"
    clients_file.write_text(yaml.safe_dump({"clients": [consent_app]}, sort_keys=False))
    port = free_port()
    env = {**provider_env(folder, port, smtp.port, clients_file), "RATELIMIT_EMAIL": "1 per hour"}
    provider = Provider(url(port), env, folder)
    migrated = provider.cli("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    with running(SERVE, env, provider.log, f"{provider.url}/health/ready"):
        yield provider


# -- pages without an account ---------------------------------------------------------------


def test_forgot_password_and_the_emailed_reset_link(page: Page, shots, provider, browser, mail):
    portal = provider.url
    account = create_account(provider, browser, mail, "forgetful")

    page.goto(f"{portal}/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    photo(shots, "forgot-password")
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_text("Enter your email address.")).to_be_visible()
    photo(shots, "forgot-password-empty")
    page.get_by_label("Email address").fill(account.email)
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("heading", name=re.compile("Check your email"))).to_be_visible()
    expect(page.get_by_text("a link to set a new password")).to_be_visible()
    photo(shots, "forgot-password-sent")

    link = mail.link(account.email, "Set a new password", "/reset-password/")
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    photo(shots, "reset-password")
    account.password = f"quiet harbour {secrets.token_hex(3)} meadow"
    page.get_by_label("New password", exact=True).fill(account.password)
    page.get_by_label("Repeat the new password").fill(account.password + "x")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_text("The passwords do not match.")).to_be_visible()
    photo(shots, "reset-password-mismatch")
    page.get_by_label("New password", exact=True).fill(account.password)
    page.get_by_label("Repeat the new password").fill(account.password)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("heading", name="Your password has been changed")).to_be_visible()
    photo(shots, "reset-password-done")

    page.get_by_role("link", name="Sign in").click()
    sign_in_with_password(page, account)  # the new password works
    page.wait_for_url(f"{portal}/mfa/setup")

    page.goto(link)  # the link worked once
    expect(page.get_by_role("heading", name="This link has already been used")).to_be_visible()
    expect(page.get_by_role("link", name="Back to sign in")).to_be_visible()
    expect(page.get_by_label("Email address")).to_have_value("")  # UX 22
    photo(shots, "reset-link-used")


def test_send_me_a_new_activation_link(page: Page, shots, provider):
    page.goto(f"{provider.url}/activate/resend")
    expect(page.get_by_role("heading", name="Send me a new activation link")).to_be_visible()
    photo(shots, "resend-activation")
    page.get_by_label("Email address").fill("not-an-address")
    page.get_by_role("button", name="Send me a new link").click()
    expect(page.get_by_text("Enter an email address like name@example.com.")).to_be_visible()
    photo(shots, "resend-activation-invalid")
    page.get_by_label("Email address").fill(f"waiting.{secrets.token_hex(4)}@example.com")
    page.get_by_role("button", name="Send me a new link").click()
    expect(page.get_by_role("heading", name=re.compile("Check your email"))).to_be_visible()
    expect(page.get_by_text("we're sending it a new activation link")).to_be_visible()
    photo(shots, "resend-activation-sent")

    unknown = page.goto(f"{provider.url}/activate/{secrets.token_urlsafe(32)}")
    assert unknown is not None and unknown.status == 404
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()
    photo(shots, "activation-link-unknown")


def test_too_many_emails_from_one_network(page: Page, shots, strict_provider: Provider):
    forgot = f"{strict_provider.url}/forgot-password"
    page.goto(forgot)
    page.get_by_label("Email address").fill(f"someone.{secrets.token_hex(4)}@example.com")
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("heading", name=re.compile("Check your email"))).to_be_visible()

    page.goto(forgot)  # RATELIMIT_EMAIL allows one an hour
    page.get_by_label("Email address").fill(f"someone.{secrets.token_hex(4)}@example.com")
    with page.expect_response(lambda r: urlsplit(r.url).path == "/forgot-password") as answer:
        page.get_by_role("button", name="Email me a link").click()
    assert answer.value.status == 429
    expect(page.get_by_role("heading", name="Too many requests")).to_be_visible()
    expect(page.get_by_text(re.compile("Please wait .+ then try again"))).to_be_visible()
    expect(page.get_by_role("link", name="Back to sign in")).to_be_visible()
    photo(shots, "too-many-emails")


def test_the_authorize_error_page(page: Page, shots, provider, node_client):
    redirect_uri = node_client["redirect_uris"][0]
    answer = page.goto(authorize_url(provider.url, "no-such-app", redirect_uri))
    assert answer is not None and answer.status == 400
    expect(page.get_by_role("heading", name="This sign-in link does not work")).to_be_visible()
    expect(page.get_by_text("is not registered with this portal")).to_be_visible()
    expect(page.get_by_role("link", name="Go to the portal home")).to_be_visible()
    photo(shots, "authorize-unknown-client")

    answer = page.goto(authorize_url(provider.url, node_client["client_id"], "http://127.0.0.1:9/elsewhere"))
    assert answer is not None and answer.status == 400
    expect(page.get_by_role("heading", name="This sign-in link does not work")).to_be_visible()
    photo(shots, "authorize-unregistered-redirect-uri")


def test_the_404_page(page: Page, shots, provider):
    answer = page.goto(f"{provider.url}/no-such-page")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="We can't find that page")).to_be_visible()  # UX 15
    expect(page.get_by_role("link", name="Go to the portal home")).to_be_visible()
    photo(shots, "not-found")


# -- pages of a signed-in person ------------------------------------------------------------


def test_consent_and_the_sign_in_request_that_is_already_answered(
    page: Page, shots, strict_provider: Provider, browser, mail, consent_app, rp_callback
):
    portal = strict_provider.url
    account = create_account(strict_provider, browser, mail, "consenting")
    redirect_uri = consent_app["redirect_uris"][0]
    page.goto(authorize_url(portal, consent_app["client_id"], redirect_uri))
    page.wait_for_url(f"{portal}/login?**")
    expect(page.get_by_text("to continue to Reports")).to_be_visible()
    sign_in_and_set_up(page, account)
    page.get_by_role("link", name="Not now, continue").click()

    page.wait_for_url(f"{portal}/authorize/consent?**")
    expect(page.get_by_role("heading", name="Allow Reports?")).to_be_visible()
    expect(page.get_by_text("See your email address")).to_be_visible()
    photo(shots, "consent")
    tx = parse_qs(urlsplit(page.url).query)["tx"][0]
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{redirect_uri}?**")
    assert "code" in rp_callback.last(urlsplit(redirect_uri).path)[1]

    # The back button (or an old tab) opens the answered request again.
    answer = page.goto(f"{portal}/authorize?tx={tx}")
    assert answer is not None and answer.status == 410
    expect(page.get_by_role("heading", name="Start again from the app")).to_be_visible()
    expect(page.get_by_text("This sign-in request was already answered.")).to_be_visible()
    expect(page.get_by_role("link", name="Back to Reports")).to_have_attribute(
        "href", consent_app["home_url"]
    )
    photo(shots, "sign-in-request-answered")


def test_sms_codes_for_a_supported_and_an_unsupported_country(page: Page, shots, provider, browser, mail):
    account = create_account(provider, browser, mail, "texting")
    page.goto(f"{provider.url}/login")
    sign_in_with_password(page, account)
    page.wait_for_url(f"{provider.url}/mfa/setup")
    page.get_by_role("link", name=re.compile("Text message")).click()
    expect(page.get_by_role("heading", name="Get codes by text message")).to_be_visible()
    photo(shots, "sms-number")
    page.get_by_label("Mobile number").fill("+81 90 1234 5678")
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_text(re.compile(r"Japan \(\+81\)"))).to_be_visible()
    expect(page.get_by_label("Mobile number")).to_have_attribute("aria-invalid", "true")  # under its field
    photo(shots, "sms-unsupported-country")
    page.get_by_label("Mobile number").fill("+31 6 12345678")
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_role("heading", name="Enter the code we're sending")).to_be_visible()
    expect(page.get_by_text(re.compile(r"sending to .*78"))).to_be_visible()
    photo(shots, "sms-confirm")


def test_change_password_confirm_it_is_you_and_sign_out(page: Page, shots, provider, browser, mail):
    portal = provider.url
    account = create_account(provider, browser, mail, "careful")
    page.goto(f"{portal}/login")
    app = sign_in_and_set_up(page, account)

    page.goto(f"{portal}/account")
    page.get_by_role("link", name="Change password").click()
    expect(page.get_by_role("heading", name="Change password")).to_be_visible()
    photo(shots, "change-password")
    new_password = f"amber valley {secrets.token_hex(3)} kettle"
    page.get_by_label("Current password").fill("not my password")
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("Repeat the new password").fill(new_password)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your current password is not right.")).to_be_visible()
    expect(page.get_by_label("Current password")).to_have_attribute("aria-invalid", "true")  # under its field
    photo(shots, "change-password-wrong-current")
    page.get_by_label("Current password").fill(account.password)
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("Repeat the new password").fill(new_password)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password was changed.")
    photo(shots, "change-password-done")
    account.password = new_password

    # Changing sign-in methods asks again for the password and a code.
    page.goto(f"{portal}/login?reauth=1&next=/account/mfa")
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    expect(page.get_by_label("Email address")).to_have_value(account.email)
    expect(page.get_by_role("link", name="Cancel")).to_have_attribute("href", "/account/mfa")
    photo(shots, "reauth-password")
    page.get_by_label("Password", exact=True).fill(account.password)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{portal}/login/code")
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    expect(page.get_by_label("Trust this computer (skip MFA for a week)")).to_have_count(0)  # not asked then
    expect(page.get_by_role("link", name="Cancel")).to_have_attribute("href", "/account/mfa")
    photo(shots, "reauth-code")
    enter_code(page, app.code())
    page.wait_for_url(f"{portal}/account/mfa")
    methods = page.get_by_role("region", name="Your sign-in methods")  # the reminder links there too
    expect(methods.get_by_role("link", name="Add a method")).to_be_visible()

    # Sign out without an app's ID token: the person confirms first.
    page.goto(f"{portal}/logout")
    expect(page.get_by_role("heading", name="Sign out?")).to_be_visible()
    photo(shots, "logout-confirm")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    photo(shots, "signed-out")
    page.goto(f"{portal}/logout")
    expect(page.get_by_text("You are not signed in.")).to_be_visible()
    photo(shots, "logout-not-signed-in")


def test_an_app_asking_for_mfa_on_a_trusted_computer(
    page: Page, context, shots, provider, browser, mail, node_client, rp_callback
):
    portal = provider.url
    account = create_account(provider, browser, mail, "trusting")
    page.goto(f"{portal}/login")
    app = sign_in_and_set_up(page, account)
    context.clear_cookies(name="portal_session")
    page.goto(f"{portal}/login")
    sign_in_with_password(page, account)
    page.wait_for_url(f"{portal}/login/code")
    enter_code(page, app.code(), trust=True)
    expect(page.get_by_role("heading", name=f"Welcome, {account.name}")).to_be_visible()

    # A new sign-in on the trusted computer: the password is enough...
    context.clear_cookies(name="portal_session")
    page.goto(f"{portal}/login")
    sign_in_with_password(page, account)
    expect(page.get_by_role("heading", name=f"Welcome, {account.name}")).to_be_visible()
    # ...until an app asks for MFA.
    redirect_uri = node_client["redirect_uris"][0]
    page.goto(authorize_url(portal, node_client["client_id"], redirect_uri, acr_values=ACR_MFA))
    page.wait_for_url(f"{portal}/login/code")
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    expect(page.get_by_text(f"{node_client['name']} asks for a code for this sign-in.")).to_be_visible()
    expect(page.get_by_role("button", name=f"Cancel and go back to {node_client['name']}")).to_be_visible()
    photo(shots, "step-up-code")
    enter_code(page, app.code())
    page.wait_for_url(f"{redirect_uri}?**")
    assert "code" in rp_callback.last(urlsplit(redirect_uri).path)[1]
