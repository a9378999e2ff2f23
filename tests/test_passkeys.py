"""Passkeys (WebAuthn) as a person and an RP meet them: added in Manage MFA
after a fresh sign-in, offered first after the password, passwordless from
the sign-in page; `acr` and `amr` in the ID token (RFC 8176); and the checks
the WebAuthn specification requires: RP ID and origin, challenges single
use, bound to the browser and sign-in, short-lived, the signature counter."""

from __future__ import annotations

import html
import json
from urllib.parse import urlsplit

import pytest
from authenticator import Authenticator, options_in
from mailserver import text_of
from rp import RP, make_user
from rp import TestUser as Person  # not collected as a test class

from oidc_provider import audit, interaction
from oidc_provider.db import db
from oidc_provider.models import Passkey, PasskeyChallenge, User

ORIGIN = "https://op.example.test"  # the test issuer's origin


@pytest.fixture
def app(mail_app):
    return mail_app


def path(response) -> str:
    return urlsplit(response.location).path


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def signed_in(rp: RP) -> None:
    """A fresh sign-in (password + code): Manage MFA may be changed for a few minutes."""
    response = rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    assert path(response) == "/login/code", response.location
    response = rp.browser.post("/login/code", data={"code": rp.user.totp.at(rp.clock.now)})
    assert response.status_code == 302, text(response)
    rp.clock.advance(seconds=30)


def add_passkey(rp: RP, device: Authenticator, name: str = "Work laptop") -> object:
    page = rp.browser.get("/mfa/setup/passkey")
    assert page.status_code == 200, page.location
    credential = device.create(options_in(page.data), ORIGIN)
    return rp.browser.post("/mfa/setup/passkey", data={"name": name, "credential": credential})


def passkeys_of(app, person: Person) -> list[Passkey]:
    with app.app_context():
        return list(db.session.get(User, person.id).passkeys)


@pytest.fixture
def device() -> Authenticator:
    return Authenticator()


@pytest.fixture
def with_passkey(rp: RP, device: Authenticator, app, clock) -> Authenticator:
    """The user added a passkey in Manage MFA, then signed out."""
    signed_in(rp)
    assert add_passkey(rp, device).status_code == 302
    rp.browser.post("/logout", data={"confirm": "1"})
    clock.advance(seconds=60)
    return device


def password_step(rp: RP) -> object:
    """authorize → the password → where the second step is asked."""
    response = rp.authorize()
    return rp.browser.post(response.location, data={"email": rp.user.email, "password": rp.user.password})


def passkey_step(rp: RP, device: Authenticator, origin: str = ORIGIN, **kw) -> object:
    page = rp.browser.get("/login/passkey")
    assert page.status_code == 200, page.location
    return rp.browser.post(
        "/login/passkey", data={"credential": device.get(options_in(page.data), origin, **kw)}
    )


def claims_after(rp: RP, response) -> dict:
    """The finished sign-in goes back to /authorize: the app's ID token."""
    assert response.status_code == 302 and path(response) == "/authorize", (
        response.status_code,
        text(response),
    )
    tokens = rp.token(rp.code_from(rp.browser.get(response.location))).json
    return rp.checked_id_token(tokens)


# -- adding, listing, removing -----------------------------------------------------------


def test_a_passkey_is_added_in_manage_mfa_after_a_fresh_sign_in(rp, app, device, smtp_server):
    response = rp.browser.get("/mfa/setup/passkey")
    assert path(response) == "/login"  # signed out: sign in first

    signed_in(rp)
    page = rp.browser.get("/mfa/setup/passkey")
    options = options_in(page.data)
    assert options["rp"] == {"id": "op.example.test", "name": "Login Portal"}
    assert options["attestation"] == "none"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["user"]["name"] == rp.user.email and options["user"]["id"] != rp.user.email

    response = rp.browser.post(
        "/mfa/setup/passkey", data={"name": "Work laptop", "credential": device.create(options, ORIGIN)}
    )

    assert path(response) == "/account/mfa"
    manage = text(rp.browser.get("/account/mfa"))
    assert "Passkey “Work laptop”" in manage and "not used yet" in manage
    [mail] = [m for m in smtp_server.to(rp.user.email) if "sign-in methods changed" in m["Subject"]]
    assert "the passkey “Work laptop”" in text_of(mail)
    with app.app_context():
        [event] = audit.query(user_id=rp.user.id, events=["mfa_added"])
        assert event.details == {"kind": "passkey", "target": "Work laptop"}


def test_adding_a_passkey_needs_a_fresh_sign_in(rp, clock, device):
    signed_in(rp)
    clock.advance(minutes=6)  # past REAUTH_MAX_AGE

    response = rp.browser.get("/mfa/setup/passkey")

    assert path(response) == "/login" and "reauth=1" in response.location


def test_a_passkey_made_for_another_site_is_not_added(rp, app, device):
    signed_in(rp)
    options = options_in(rp.browser.get("/mfa/setup/passkey").data)

    response = rp.browser.post(
        "/mfa/setup/passkey",
        data={"name": "Phished", "credential": device.create(options, "https://login-portal.example.net")},
    )

    assert response.status_code == 400 and "The passkey was not created" in text(response)
    assert passkeys_of(app, rp.user) == []


def test_a_passkey_can_be_removed_but_never_the_last_method(rp, app, device, clock):
    signed_in(rp)
    add_passkey(rp, device)
    [passkey] = passkeys_of(app, rp.user)
    with app.app_context():  # the authenticator app goes: the passkey is the only method left
        user = db.session.get(User, rp.user.id)
        [totp] = user.confirmed_methods
    response = rp.browser.post(f"/account/mfa/{totp.id}/remove")
    assert response.status_code == 303

    response = rp.browser.post(f"/account/mfa/passkeys/{passkey.id}/remove")

    assert response.status_code == 303
    assert "This is your only sign-in method" in text(rp.browser.get("/account/mfa"))
    assert len(passkeys_of(app, rp.user)) == 1


def test_removing_a_passkey_asks_first_and_the_last_method_is_not_offered(rp, app, device, clock):
    """UX 11 for passkeys: Remove is a link to a page that names the passkey and
    asks; with the passkey as the only method left, that page sends the person
    back to Manage MFA saying why, and Manage MFA offers no Remove."""
    signed_in(rp)
    add_passkey(rp, device)
    [passkey] = passkeys_of(app, rp.user)
    manage = text(rp.browser.get("/account/mfa"))
    assert f'href="/account/mfa/passkeys/{passkey.id}/remove"' in manage

    confirm = rp.browser.get(f"/account/mfa/passkeys/{passkey.id}/remove")

    assert confirm.status_code == 200
    page = text(confirm)
    assert "<title>Remove a passkey? · " in page and "Remove this passkey?" in page
    assert "Passkey “Work laptop”" in page and "You keep your other method" in page
    assert f'action="/account/mfa/passkeys/{passkey.id}/remove"' in page and "Keep it" in page
    assert len(passkeys_of(app, rp.user)) == 1  # asking removed nothing

    with app.app_context():  # the authenticator app goes: the passkey is the only method left
        [totp] = db.session.get(User, rp.user.id).confirmed_methods
    assert rp.browser.post(f"/account/mfa/{totp.id}/remove").status_code == 303
    last = rp.browser.get(f"/account/mfa/passkeys/{passkey.id}/remove")
    assert last.status_code == 303 and path(last) == "/account/mfa"
    manage = text(rp.browser.get("/account/mfa"))
    assert "This is your only sign-in method" in manage
    assert f"/account/mfa/passkeys/{passkey.id}/remove" not in manage


def test_removing_a_passkey_is_audited_and_it_no_longer_signs_in(rp, app, with_passkey):
    response = password_step(rp)
    response = passkey_step(rp, with_passkey)
    assert path(response) == "/authorize"
    [passkey] = passkeys_of(app, rp.user)

    assert rp.browser.post(f"/account/mfa/passkeys/{passkey.id}/remove").status_code == 303

    assert passkeys_of(app, rp.user) == []
    with app.app_context():
        [event] = audit.query(user_id=rp.user.id, events=["mfa_removed"])
        assert event.details == {"kind": "passkey", "target": "Work laptop"}


# -- after the password ------------------------------------------------------------------


def test_after_the_password_a_passkey_is_offered_first_and_counts_as_mfa(rp, app, with_passkey):
    response = password_step(rp)
    assert path(response) == "/login/passkey"
    page = rp.browser.get("/login/passkey")
    assert "Use your passkey" in text(page) and "Use a code instead" in text(page)
    options = options_in(page.data)
    assert options["rpId"] == "op.example.test" and options["userVerification"] == "preferred"
    assert [c["id"] for c in options["allowCredentials"]] == [passkeys_of(app, rp.user)[0].credential_id]

    response = rp.browser.post("/login/passkey", data={"credential": with_passkey.get(options, ORIGIN)})

    claims = claims_after(rp, response)
    assert claims["acr"] == interaction.ACR_MFA
    assert claims["amr"] == ["pwd", "hwk", "user", "mfa"]
    with app.app_context():
        [event] = audit.query(user_id=rp.user.id, events=["signin_ok"], limit=1)
        assert event.details["method"] == "passkey"


def test_a_synced_passkey_is_swk_and_without_user_verification_no_user(rp, app, clock):
    device = Authenticator(synced=True, verifies_user=False)
    signed_in(rp)
    add_passkey(rp, device, "Phone")
    rp.browser.post("/logout", data={"confirm": "1"})

    password_step(rp)
    claims = claims_after(rp, passkey_step(rp, device))

    assert claims["amr"] == ["pwd", "swk", "mfa"] and claims["acr"] == interaction.ACR_MFA


def test_the_code_is_still_there_when_the_passkey_is_not(rp, with_passkey):
    password_step(rp)
    response = rp.browser.post("/login/code", data={"code": rp.user.totp.at(rp.clock.now)})
    assert claims_after(rp, response)["amr"] == ["pwd", "otp", "mfa"]


# -- passwordless ------------------------------------------------------------------------


def passwordless(rp: RP, device: Authenticator, origin: str = ORIGIN) -> object:
    start = rp.authorize()
    page = rp.browser.get(start.location)
    assert "Sign in with a passkey" in text(page)
    assert 'autocomplete="username webauthn"' in page.get_data(as_text=True)  # conditional UI
    options = options_in(page.data)
    tx = urlsplit(start.location).query
    return rp.browser.post(f"/login/passkey/any?{tx}", data={"credential": device.get(options, origin)})


def test_passwordless_sign_in_with_a_passkey_is_password_and_mfa_at_once(rp, app, with_passkey):
    page = rp.browser.get(rp.authorize().location)
    options = options_in(page.data)
    assert options["allowCredentials"] == [] and options["userVerification"] == "required"

    claims = claims_after(rp, passwordless(rp, with_passkey))

    assert claims["amr"] == ["hwk", "user", "mfa"] and claims["acr"] == interaction.ACR_MFA
    assert claims["sub"] == rp.user.sub


def test_passwordless_needs_user_verification(rp, app, clock):
    device = Authenticator(verifies_user=False)
    signed_in(rp)
    add_passkey(rp, device)
    rp.browser.post("/logout", data={"confirm": "1"})

    response = passwordless(rp, device)

    assert response.status_code == 401 and "That passkey could not be used" in text(response)
    assert rp.browser.get("/").status_code == 302  # not signed in


def test_an_unknown_passkey_reads_like_any_other_failure(rp, with_passkey):
    stranger = Authenticator()
    page = rp.browser.get("/login")
    options = options_in(page.data)
    stranger.create({"rp": {"id": "op.example.test"}, "user": {"id": "eA"}, "challenge": "AA"}, ORIGIN)

    response = rp.browser.post("/login/passkey/any", data={"credential": stranger.get(options, ORIGIN)})

    assert response.status_code == 401
    assert "That passkey could not be used. Try again, or use another way to sign in." in text(response)


def test_a_disabled_account_cannot_sign_in_with_its_passkey(rp, app, with_passkey, runner):
    runner.invoke(args=["users", "disable", rp.user.email, "--reason", "left the company"])

    response = passwordless(rp, with_passkey)

    assert response.status_code == 401 and rp.browser.get("/").status_code == 302


# -- the checks WebAuthn requires -----------------------------------------------------------


def test_a_response_made_on_another_origin_is_refused(rp, app, with_passkey):
    """A phishing page that relays the portal's options gets an assertion for
    its own origin: refused, after the password and passwordless."""
    password_step(rp)
    response = passkey_step(rp, with_passkey, origin="https://op.example.test.evil.example")
    assert response.status_code == 401 and rp.browser.get("/").status_code == 302

    response = passwordless(rp, with_passkey, origin="http://op.example.test")
    assert response.status_code == 401 and rp.browser.get("/").status_code == 302


def test_a_response_for_another_rp_id_is_refused(rp, with_passkey):
    password_step(rp)
    with_passkey.credentials[0].rp_id = "example.test"  # a parent domain's RP ID
    response = passkey_step(rp, with_passkey, rp_id="example.test")
    assert response.status_code == 401


def test_a_replayed_response_is_refused(rp, app, with_passkey):
    start = rp.authorize()
    page = rp.browser.get(start.location)
    credential = with_passkey.get(options_in(page.data), ORIGIN)
    sign_in = f"/login/passkey/any?{urlsplit(start.location).query}"
    assert rp.browser.post(sign_in, data={"credential": credential}).status_code == 302
    rp.browser.post("/logout", data={"confirm": "1"})

    replayed = rp.browser.post(sign_in, data={"credential": credential})

    assert replayed.status_code == 401 and rp.browser.get("/").status_code == 302


def test_a_challenge_works_only_in_the_browser_it_was_given_to(rp, app, with_passkey):
    page = rp.browser.get("/login")
    credential = with_passkey.get(options_in(page.data), ORIGIN)
    other_browser = app.test_client()

    response = other_browser.post("/login/passkey/any", data={"credential": credential})

    assert response.status_code == 401 and other_browser.get("/").status_code == 302


def test_a_challenge_is_short_lived(rp, app, clock, with_passkey):
    page = rp.browser.get("/login")
    credential = with_passkey.get(options_in(page.data), ORIGIN)
    clock.advance(seconds=app.config["PASSKEY_CHALLENGE_LIFETIME"] + 1)

    response = rp.browser.post("/login/passkey/any", data={"credential": credential})

    assert response.status_code == 401


def test_a_challenge_is_bound_to_its_sign_in(rp, app, with_passkey):
    """A challenge given for the passwordless sign-in does not finish the
    step after the password, nor the reverse."""
    page = rp.browser.get("/login")
    passwordless_credential = with_passkey.get(options_in(page.data), ORIGIN)
    password_step(rp)

    response = rp.browser.post("/login/passkey", data={"credential": passwordless_credential})

    assert response.status_code == 401
    with app.app_context():
        used = db.session.query(PasskeyChallenge).filter(PasskeyChallenge.used_at.isnot(None))
        assert used.filter(PasskeyChallenge.purpose != "register").count() == 0


def test_a_signature_counter_that_goes_back_is_refused(rp, app, with_passkey):
    """A cloned authenticator shows itself by a counter that does not grow."""
    password_step(rp)
    assert path(passkey_step(rp, with_passkey)) == "/authorize"
    rp.browser.post("/logout", data={"confirm": "1"})
    with_passkey.credentials[0].sign_count -= 1  # the clone is one use behind

    password_step(rp)
    response = passkey_step(rp, with_passkey)

    assert response.status_code == 401


def test_garbage_instead_of_a_passkey_is_a_clear_refusal(rp, with_passkey):
    password_step(rp)
    for credential in ("", "not json", json.dumps({"id": "x", "response": {}}), "[]"):
        response = rp.browser.post("/login/passkey", data={"credential": credential})
        assert response.status_code == 401, credential
        assert "That passkey could not be used" in text(response)
    response = rp.browser.post("/login/passkey/any", data={"credential": "{}"})
    assert response.status_code == 401


def test_passkeys_are_not_offered_on_an_ip_address_issuer(make_app, clock):
    """Browsers refuse WebAuthn for an IP address: nothing is offered then."""
    app = make_app(OIDC_ISSUER="http://127.0.0.1:5000")
    page = app.test_client().get("/login")
    assert page.status_code == 200 and b"passkey-options" not in page.data


def test_discovery_names_the_amr_values(client):
    metadata = client.get("/.well-known/openid-configuration").json
    assert set(metadata["amr_values_supported"]) >= {"pwd", "otp", "hwk", "swk", "user", "mfa"}


def test_a_second_person_with_a_passkey_signs_in_as_themselves(rp, app, with_passkey, clock):
    willow = make_user(app, email="willow@example.com", name="Willow Rosenberg")
    clock.advance(seconds=30)
    device = Authenticator()
    other = RP(app, app.test_client(), clock, willow)
    signed_in(other)
    add_passkey(other, device, "Willow's laptop")

    claims = claims_after(rp, passwordless(rp, device))

    assert claims["sub"] == willow.sub


def test_an_app_demanding_mfa_on_a_trusted_computer_gets_the_passkey_first(rp, app, clock, with_passkey):
    password_step(rp)
    response = rp.browser.post(
        "/login/passkey",
        data={
            "credential": with_passkey.get(options_in(rp.browser.get("/login/passkey").data), ORIGIN),
            "trust": "y",
        },
    )
    rp.browser.get(response.location)
    rp.browser.delete_cookie("portal_session")
    clock.advance(hours=1)
    response = rp.browser.post(
        rp.authorize().location, data={"email": rp.user.email, "password": rp.user.password}
    )
    assert path(response) == "/authorize"  # trusted: the password alone
    rp.browser.get(response.location)

    response = rp.browser.get(
        rp.authorize(client_id="mfa-app", redirect_uri="https://rp.example.test/strict").location
    )
    assert path(response) == "/login/passkey"
    page = rp.browser.get("/login/passkey")
    assert "Strict app" in text(page) and "Trust this computer" not in text(page)
    response = rp.browser.post(
        "/login/passkey", data={"credential": with_passkey.get(options_in(page.data), ORIGIN)}
    )

    code = rp.code_from(rp.browser.get(response.location))
    from conftest import SECRETS

    tokens = rp.token(
        code, client_id="mfa-app", secret=SECRETS["client"], redirect_uri="https://rp.example.test/strict"
    )
    claims = rp.id_token(tokens.json["id_token"], "mfa-app")
    assert claims["amr"] == ["pwd", "hwk", "user", "mfa"] and claims["acr"] == interaction.ACR_MFA


def test_a_passkey_whose_backup_eligibility_changes_is_refused(rp, with_passkey):
    """WebAuthn: a credential's backup eligibility never changes."""
    with_passkey.synced = True
    password_step(rp)
    assert passkey_step(rp, with_passkey).status_code == 401


def test_a_name_cannot_break_out_of_the_options_block(rp, app, device):
    with app.app_context():
        user = db.session.get(User, rp.user.id)
        user.name = "Buffy </script><script>alert(1)</script> <!--"
        db.session.commit()
    signed_in(rp)

    page = rp.browser.get("/mfa/setup/passkey")

    assert b"</script><script>alert(1)" not in page.data
    assert options_in(page.data)["user"]["displayName"] == "Buffy </script><script>alert(1)</script> <!--"
