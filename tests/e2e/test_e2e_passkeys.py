"""Passkeys, recovery codes and new-device alerts in a real browser: Chromium
with a virtual authenticator (DevTools protocol, WebAuthn domain) against the
provider process, mail through the real SMTP server.

Browsers refuse WebAuthn on an IP address, so this provider's issuer is
http://localhost:… (a secure context without TLS); it listens on 127.0.0.1."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from mailserver import Inbox, free_port, links, text_of
from playwright.sync_api import Page, expect

from .conftest import create_account
from .people import Account, Mailbox, Screens, set_up_authenticator, sign_in_with_password
from .servers import Provider, provider_process

CODE = re.compile(r"\b([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})\b")


@pytest.fixture(scope="module")
def passkey_provider(e2e_folder: Path, smtp: Inbox) -> Iterator[Provider]:
    port = free_port()
    with provider_process(
        e2e_folder / "passkeys", port, smtp.port, [], OIDC_ISSUER=f"http://localhost:{port}"
    ) as running:
        yield running


# A browser without passkey autofill: Chromium's virtual authenticator answers an
# autofill (conditional) request at once, where a person would pick the passkey.
NO_AUTOFILL = "PublicKeyCredential.isConditionalMediationAvailable = async () => false;"


def add_virtual_authenticator(page: Page, autofill: bool = False) -> tuple[object, str]:
    """A platform authenticator with user verification, as a laptop's fingerprint reader."""
    if not autofill:
        page.add_init_script(NO_AUTOFILL)
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def first_sign_in(page: Page, provider: Provider, account: Account, shots) -> list[str]:
    """Password, the authenticator app as the first method, and the ten
    recovery codes shown once on the welcome page."""
    page.goto(f"{provider.url}/login")
    sign_in_with_password(page, account)
    account.authenticator = set_up_authenticator(page)
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    shots("recovery-codes-shown-once")
    codes = CODE.findall(page.locator(".recovery-codes").inner_text())
    assert len(codes) == 10
    page.reload()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_have_count(0)
    return codes


def add_passkey(page: Page, provider: Provider, shots) -> None:
    page.goto(f"{provider.url}/account/mfa")
    page.get_by_role("link", name="Add a passkey").click()
    expect(page.get_by_role("heading", name="Add a passkey")).to_be_visible()
    page.get_by_label("Name this passkey").fill("Work laptop")
    shots("add-a-passkey")
    page.get_by_role("button", name="Create the passkey").click()
    expect(page.get_by_text("Done: you can now sign in with the passkey “Work laptop”.")).to_be_visible()
    expect(page.get_by_text("Passkey “Work laptop”", exact=True)).to_be_visible()
    shots("manage-mfa-with-a-passkey")


def sign_out(page: Page, provider: Provider) -> None:
    page.goto(f"{provider.url}/logout")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()


def test_passkey_added_then_used_after_the_password_and_passwordless_then_removed(
    page: Page, shots, passkey_provider: Provider, browser, mail: Mailbox
):
    provider = passkey_provider
    account = create_account(provider, browser, mail, "passkey")
    first_authenticator = add_virtual_authenticator(page)
    first_sign_in(page, provider, account, shots)
    add_passkey(page, provider, shots)
    assert "the passkey “Work laptop”" in text_of(mail.next(account.email, "sign-in methods changed"))
    sign_out(page, provider)

    # after the password, the passkey comes first
    page.goto(f"{provider.url}/login")
    sign_in_with_password(page, account)
    expect(page.get_by_role("heading", name="Use your passkey")).to_be_visible()
    shots("passkey-after-the-password")
    # the code page offers the passkey back, beside a recovery code and support's reset
    page.get_by_role("link", name="Use a code instead").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    page.get_by_text("Can't use any of these?").click()
    expect(page.get_by_role("link", name="Write to support")).to_be_visible()
    shots("code-page-with-the-passkey-offer")
    page.get_by_role("link", name="Use your passkey").click()
    expect(page.get_by_role("heading", name="Use your passkey")).to_be_visible()
    page.get_by_role("button", name="Use your passkey").click()
    expect(page.get_by_role("heading", name=re.compile("^Welcome"))).to_be_visible()
    sign_out(page, provider)

    # passwordless: "Sign in with a passkey" on the sign-in page
    page.goto(f"{provider.url}/login")
    shots("sign-in-with-a-passkey")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.get_by_role("heading", name=re.compile("^Welcome"))).to_be_visible()
    sign_out(page, provider)

    # passwordless from the address field's autofill (conditional UI), in a
    # browser that offers it: the same passkey, on another tab's authenticator
    cdp, authenticator = first_authenticator
    [credential] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    tab = page.context.new_page()
    tab_cdp, tab_authenticator = add_virtual_authenticator(tab, autofill=True)
    tab_cdp.send("WebAuthn.addCredential", {"authenticatorId": tab_authenticator, "credential": credential})
    tab.goto(f"{provider.url}/login")
    expect(
        tab.get_by_role("heading", name=re.compile("^Welcome"))
    ).to_be_visible()  # picked from the autofill
    tab.close()
    result = provider.cli("mfa", "show", account.email)
    assert "Work laptop" in result.stdout and "passkey" in result.stdout, result.stdout
    assert "recovery codes: 10 of 10 left" in result.stdout

    # removed in Manage MFA (fresh: the passkey sign-in just happened)
    page.goto(f"{provider.url}/account/mfa")
    page.get_by_role("link", name="Remove the passkey “Work laptop”").click()  # asks first (UX 11)
    expect(page.get_by_role("heading", name="Remove this passkey?")).to_be_visible()
    shots("remove-a-passkey-asks-first")
    page.get_by_role("button", name="Remove it").click()
    expect(page.get_by_text("Removed: the passkey “Work laptop”.")).to_be_visible()
    expect(page.get_by_text("Passkey “Work laptop”", exact=True)).to_have_count(0)
    sign_out(page, provider)
    page.goto(f"{provider.url}/login")
    sign_in_with_password(page, account)
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()


def test_a_wrong_origin_and_a_replayed_challenge_are_refused(
    page: Page, shots, passkey_provider: Provider, browser, mail: Mailbox
):
    provider = passkey_provider
    account = create_account(provider, browser, mail, "phished")
    add_virtual_authenticator(page)
    first_sign_in(page, provider, account, shots)
    add_passkey(page, provider, shots)
    sign_out(page, provider)

    # A page of another origin on the same host (another app's port) relays the
    # portal's options: the browser signs for that origin, and the portal refuses
    # the answer. (A look-alike domain is refused by the browser itself.)
    page.goto(f"{provider.url}/login")
    options = page.locator("#passkey-options").text_content()
    csrf = page.locator("[data-passkey]").get_attribute("data-csrf")
    phishing = f"http://localhost:{free_port()}/"
    page.route(phishing, lambda route: route.fulfill(content_type="text/html", body="<h1>Sign in</h1>"))
    page.goto(phishing)
    answer = page.evaluate(RELAY, options)
    assert json.loads(answer)["response"]["clientDataJSON"]
    refused = page.request.post(
        f"{provider.url}/login/passkey/any", form={"csrf_token": csrf, "credential": answer}
    )
    assert refused.status == 401 and "That passkey could not be used" in refused.text()

    # A real passwordless sign-in, its answer captured on the way...
    page.goto(f"{provider.url}/login")
    with page.expect_request(lambda r: r.url.startswith(f"{provider.url}/login/passkey/any")) as sent:
        page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.get_by_role("heading", name=re.compile("^Welcome"))).to_be_visible()
    captured = dict(pair.split("=", 1) for pair in sent.value.post_data.split("&"))
    sign_out(page, provider)
    # ...and sent again with a valid form token: its challenge was used up.
    page.goto(f"{provider.url}/login")
    csrf = page.locator("[data-passkey]").get_attribute("data-csrf")
    replayed = page.request.post(
        f"{provider.url}/login/passkey/any",
        form={"csrf_token": csrf, "credential": unquote_plus(captured["credential"])},
    )
    assert replayed.status == 401 and "That passkey could not be used" in replayed.text()
    page.goto(f"{provider.url}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


# The relay a phishing page would run: the portal's options, asked of the browser on its own origin.
RELAY = """async (text) => {
  const b = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), c => c.charCodeAt(0));
  const o = JSON.parse(text);
  o.challenge = b(o.challenge);
  const credential = await navigator.credentials.get({publicKey: o});
  return JSON.stringify(credential.toJSON());
}"""


def test_a_recovery_code_and_a_new_device_alert(
    page: Page, shots, passkey_provider: Provider, browser, mail: Mailbox
):
    provider = passkey_provider
    account = create_account(provider, browser, mail, "lostphone")
    codes = first_sign_in(page, provider, account, shots)
    sign_out(page, provider)

    # another browser: the phone is lost, a recovery code signs in
    other = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    try:
        lost = other.new_page()
        lost.goto(f"{provider.url}/login")
        sign_in_with_password(lost, account)
        expect(lost.get_by_role("heading", name="Enter your code")).to_be_visible()
        lost.get_by_role("link", name="Use a recovery code").click()
        expect(lost.get_by_role("link", name="Write to support")).to_be_visible()  # the last way on
        Screens(shots.folder, lost)("recovery-code-page")
        lost.get_by_label("Recovery code").fill(codes[0])
        lost.get_by_role("button", name="Sign in").click()
        expect(lost.get_by_role("heading", name="Manage MFA")).to_be_visible()
        expect(lost.get_by_text("You signed in with a recovery code; 9 are left.")).to_be_visible()
    finally:
        other.close()
    # both sent as the sign-in completed, in either order
    alert, used_mail = mail.each(account.email, "New sign-in to your", "A recovery code was used")
    used = text_of(used_mail)
    assert "9 recovery codes are left" in used
    body = text_of(alert)
    assert "Chrome" in body and "127.0.0.1" in body and "UTC" in body
    [not_me] = [link for link in links(alert) if "/not-me/" in link]
    page.goto(not_me)
    shots("this-wasnt-me")
    page.get_by_role("button", name="Secure my account").click()
    expect(page.get_by_text("Your account was signed out everywhere.")).to_be_visible()
    shots("this-wasnt-me-new-password")
