"""The demo relying party (examples/demo_rp): its pages, its silent check at the
portal, its back-channel logout receiver and logout against a stub provider
whose keys the tests hold; whole sign-ins (and single sign-on into a second
app) against the real provider app, in process (no network); and the launcher
of `make demo` (examples/launcher.py) reading clients.yaml."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import conftest
import pytest
import requests
import yaml
from joserfc import jwt
from joserfc.jwk import RSAKey
from requests.structures import CaseInsensitiveDict
from rp import RP, make_user, query

sys.path.insert(0, str(conftest.ROOT))  # examples/ is no part of the installed package
from examples import launcher  # noqa: E402
from examples.demo_rp import LocalSession, create_app, signed_in_note, silent_answer  # noqa: E402
from examples.demo_rp.provider import BACKCHANNEL_EVENT  # noqa: E402

ISSUER = "https://op.example.test"
# not the shipped dev-secret-modeler: an https issuer refuses the development secrets
SECRET = "modeler-secret-for-the-demo-app-tests-0000001"
BASE = "http://127.0.0.1:5001"
END_SESSION = f"{ISSUER}/logout"


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})


class StubProvider:
    """Discovery and JWKS as fetch_json serves them to the demo app; tokens signed with `key`."""

    def __init__(self, end_session: bool = True, issuer: str = ISSUER) -> None:
        self.key = rsa_key("k1")
        self.published = [self.key]
        self.metadata = {
            "issuer": issuer,
            "authorization_endpoint": f"{ISSUER}/authorize",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": f"{ISSUER}/jwks.json",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            **({"end_session_endpoint": END_SESSION} if end_session else {}),
        }

    def fetch_json(self, url: str) -> dict[str, Any]:
        if url == f"{self.metadata['issuer']}/.well-known/openid-configuration":
            return self.metadata
        assert url == self.metadata["jwks_uri"], url
        return {"keys": [k.as_dict(private=False) for k in self.published]}

    def logout_token(self, key: RSAKey | None = None, header: dict | None = None, **changes: Any) -> str:
        """A valid logout token for the demo app, with `changes` (None removes a claim)."""
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": "modeler",
            "iat": now,
            "exp": now + 120,
            "jti": secrets.token_hex(8),
            "sub": "u-buffy",
            "sid": "sid-1",
            "events": {BACKCHANNEL_EVENT: {}},
            **changes,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        key = key or self.key
        return jwt.encode(
            {"alg": "RS256", "kid": key.kid, "typ": "logout+jwt", **(header or {})}, claims, key
        )


@pytest.fixture
def stub() -> StubProvider:
    return StubProvider()


def demo_app(fetch_json=None, issuer=ISSUER):
    """Modeler as `make demo` runs it; `fetch_json` stands in for the provider (None: over HTTP)."""
    config = {
        "ISSUER": issuer,
        "CLIENT_ID": "modeler",
        "CLIENT_SECRET": SECRET,
        "NAME": "Modeler",
    }
    return create_app({**config, "BASE_URL": BASE, "SECRET_KEY": "test", "FETCH_JSON": fetch_json})


@pytest.fixture
def demo(stub):
    return demo_app(stub.fetch_json)


def signed_in(demo, sid: str = "sid-1", sub: str = "u-buffy"):
    """A browser with a local session of that provider session `sid` and user `sub`."""
    claims = {"sub": sub, "sid": sid, "acr": "mfa", "amr": ["pwd", "otp", "mfa"], "auth_time": 1_700_000_000}
    local = LocalSession({"id_token": f"id-token-of-{sid}"}, claims, {"sub": sub, "name": "Buffy Summers"})
    browser, key = demo.test_client(), f"local-{sid}-{sub}"
    demo.extensions["demo_rp"].sessions[key] = local
    with browser.session_transaction(BASE) as cookie:
        cookie["local_id"] = key
    return browser


def follow(browser, response, answer_with: str = "login_required"):
    """Follow the redirects as a browser does, up to the provider's sign-in pages. The stub
    provider answers the app's silent check (prompt=none) with `answer_with`, as the portal
    does when nobody is signed in."""
    for _ in range(5):
        if response.status_code not in (301, 302):
            return response
        location = response.location
        if location.startswith(f"{ISSUER}/authorize?"):
            params = query(location)
            if params.get("prompt") != "none":
                return response  # the person signs in at the provider
            answer = {"error": answer_with, "state": params["state"], "iss": ISSUER}
            location = f"{BASE}/callback?{urlencode(answer)}"
        response = browser.get(location)
    raise AssertionError(f"redirected in circles, last to {response.location}")


def open_page(browser, **query_string: str):
    """The app's page as a browser shows it, with nobody signed in at the provider."""
    return follow(browser, browser.get(f"{BASE}/", query_string=query_string))


def is_signed_in(browser) -> bool:
    page = open_page(browser).get_data(as_text=True)
    visitor = "You are signed out" in page or "You are not signed in" in page
    assert visitor != ("Signed in as" in page)
    return "Signed in as Buffy Summers" in page


def backchannel(demo, token: str | None):
    data = {} if token is None else {"logout_token": token}
    return demo.test_client().post(f"{BASE}/backchannel-logout", data=data)


def test_signed_out_page_names_the_app_and_offers_sign_in(demo):
    page = open_page(demo.test_client())
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<h1>Modeler</h1>" in html and "Sign in with the Login Portal" in html
    assert "<title>Modeler · a demo app of the Login Portal</title>" in html
    assert 'href="/static/demo.css"' in html  # its own stylesheet, no CDN
    assert not re.search(r'(src|href)="https://(?!op\.example\.test/)', html)  # links only to the portal
    with demo.test_client().get(f"{BASE}/static/demo.css") as css:
        assert css.status_code == 200 and css.mimetype == "text/css"


def test_a_first_time_visitor_is_checked_at_the_portal_silently(demo):
    """UX defect 18: a first visit asks the portal without a page (prompt=none, with PKCE);
    nobody signed in there: "You are not signed in", never "You are signed out"."""
    browser = demo.test_client()
    check = browser.get(f"{BASE}/")
    assert check.status_code == 302 and check.location.startswith(f"{ISSUER}/authorize?")
    params = query(check.location)
    assert params["prompt"] == "none" and params["client_id"] == "modeler"
    assert params["redirect_uri"] == f"{BASE}/callback" and params["code_challenge_method"] == "S256"
    html = follow(browser, check).get_data(as_text=True)
    assert "<h2>You are not signed in</h2>" in html and "signed out" not in html
    assert "Sign in with the Login Portal" in html
    with browser.session_transaction(BASE) as cookie:  # the check's state is used up
        assert not [key for key in cookie if key.startswith("_state_")] and "silent_state" not in cookie
    # The next visit asks again: someone who signed in at the portal since is signed in here.
    assert browser.get(f"{BASE}/").location.startswith(f"{ISSUER}/authorize?")


def test_after_a_back_channel_logout_the_page_says_signed_out(demo, stub):
    browser = signed_in(demo)
    assert backchannel(demo, stub.logout_token()).status_code == 200
    html = open_page(browser).get_data(as_text=True)
    assert "<h2>You are signed out</h2>" in html and "Sign in with the Login Portal" in html


@pytest.mark.parametrize(
    "error, answer",
    [
        ("login_required", "visitor"),
        ("consent_required", "visitor"),
        ("account_selection_required", "visitor"),
        ("interaction_required", "ask"),
        ("invalid_request", "refused"),
        ("server_error", "refused"),
    ],
)
def test_what_a_silent_check_answer_means(error, answer):
    assert silent_answer(error) == answer


def test_an_app_that_needs_a_code_asks_the_person_once(demo):
    """interaction_required (signed in at the portal, but this app requires MFA and the
    sign-in had none): the sign-in pages, not a page; back from them without signing in
    (their Cancel leads to the app's home), the page, not the sign-in pages again."""
    browser = demo.test_client()
    check = browser.get(f"{BASE}/")
    asked = follow(browser, check, answer_with="interaction_required")
    assert asked.status_code == 302  # stopped at the provider: the interactive sign-in
    assert asked.location.startswith(f"{ISSUER}/authorize?") and "prompt" not in query(asked.location)
    cancelled = browser.get(f"{BASE}/")
    html = cancelled.get_data(as_text=True)
    assert cancelled.status_code == 200 and "<h2>You are not signed in</h2>" in html
    assert "Modeler asks you to confirm it&#39;s you with a one-time code" in html


def test_a_silent_answer_with_a_state_we_did_not_send_is_refused(demo):
    browser = demo.test_client()
    browser.get(f"{BASE}/")  # the silent check is on its way
    forged = browser.get(f"{BASE}/callback", query_string={"error": "login_required", "state": "forged"})
    assert forged.status_code == 400 and "login_required" in forged.get_data(as_text=True)


@pytest.mark.parametrize("state", ["é", "\u202e", "x" * 5000])
def test_any_state_in_the_address_is_a_page_not_an_error(demo, state):
    """Back from a sign-out, or from a silent check, with a state of any characters."""
    browser = signed_in(demo)
    browser.post(f"{BASE}/logout")  # a logout state is expected
    back = follow(browser, browser.get(f"{BASE}/", query_string={"state": state}))
    assert back.status_code == 200 and "unknown state" in back.get_data(as_text=True)
    browser.get(f"{BASE}/")  # a silent check's state is expected
    callback = browser.get(f"{BASE}/callback", query_string={"error": "login_required", "state": state})
    assert callback.status_code == 400 and "login_required" in callback.get_data(as_text=True)


def test_the_app_links_to_the_portal_pages_of_the_discovered_issuer():
    """My details and Manage MFA ("Change MFA information", as the platform's MyWEM) and
    the portal home, below the issuer of the discovery document."""
    issuer = "https://op.example.test/portal"
    demo = demo_app(StubProvider(issuer=issuer).fetch_json, issuer=issuer)
    html = signed_in(demo).get(f"{BASE}/").get_data(as_text=True)
    assert f'<a href="{issuer}/account">My details</a>' in html
    assert f'<a href="{issuer}/account/mfa">Change MFA information</a>' in html
    assert f'<a href="{issuer}/">All apps</a>' in html


def test_an_unreachable_provider_still_shows_which_app_this_is():
    def unreachable(url: str) -> dict[str, Any]:
        raise requests.ConnectionError(f"cannot reach {url}")

    page = demo_app(unreachable).test_client().get(f"{BASE}/")
    html = page.get_data(as_text=True)
    assert page.status_code == 502 and "<h1>Modeler</h1>" in html and "cannot reach" in html
    assert "My details" not in html and "Sign in with the Login Portal" in html


def test_the_favicon(demo):
    """No 404 on /favicon.ico: the app's initial on its colour."""
    browser = demo.test_client()
    ico = browser.get(f"{BASE}/favicon.ico")
    assert ico.status_code == 301 and ico.location == "/favicon.svg"
    svg = browser.get(f"{BASE}/favicon.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    hue = demo.extensions["demo_rp"].hue
    assert f"hsl({hue}, 55%, 35%)" in svg.get_data(as_text=True) and ">M</text>" in svg.get_data(as_text=True)


@pytest.mark.parametrize(
    "amr, silent, note",
    [
        (["pwd", "otp", "mfa"], True, "Single sign-on: you were already signed in"),
        (["pwd", "otp", "mfa"], False, "with your password and a one-time code"),
        (["pwd", "sms", "mfa"], False, "with your password and a one-time code"),
        (["pwd"], False, "with your password (this computer is trusted)"),
        ([], False, "You signed in at the Login Portal."),
    ],
)
def test_the_note_after_a_sign_in_says_how_not_who(amr, silent, note):
    """UX defect 18: the flash no longer repeats the heading "Signed in as …"."""
    text = signed_in_note({"sub": "u-1", "amr": amr}, silent)
    assert note in text and "Signed in as" not in text


def test_signed_in_page_shows_the_claims_and_buttons(demo):
    html = signed_in(demo).get(f"{BASE}/").get_data(as_text=True)
    for text in ("Signed in as Buffy Summers", "u-buffy", "sid-1", "pwd otp mfa", "2023-11-14 22:13:20 UTC"):
        assert text in html
    assert "Refresh tokens" in html and "Sign out" in html


def test_healthz(demo):
    assert demo.test_client().get(f"{BASE}/healthz").json == {"status": "ok", "client_id": "modeler"}


def test_a_valid_logout_token_ends_the_sessions_of_its_sid(demo, stub):
    browser, other = signed_in(demo), signed_in(demo, sid="sid-2")
    response = backchannel(demo, stub.logout_token())
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert not is_signed_in(browser)
    assert is_signed_in(other)


def test_a_logout_token_with_only_sub_ends_every_session_of_the_user(demo, stub):
    browsers = [signed_in(demo), signed_in(demo, sid="sid-2"), signed_in(demo, sid="sid-3", sub="u-willow")]
    assert backchannel(demo, stub.logout_token(sid=None)).status_code == 200
    assert [is_signed_in(b) for b in browsers] == [False, False, True]


@pytest.mark.parametrize(
    "header",
    [{"typ": "JWT"}, {"typ": "application/logout+jwt"}],
)
def test_the_logout_token_may_be_typed_jwt(demo, stub, header):
    browser = signed_in(demo)
    assert backchannel(demo, stub.logout_token(header=header)).status_code == 200
    assert not is_signed_in(browser)


def test_an_audience_list_that_contains_the_client_id_is_accepted(demo, stub):
    browser = signed_in(demo)
    assert backchannel(demo, stub.logout_token(aud=["forum", "modeler"])).status_code == 200
    assert not is_signed_in(browser)


def test_a_rotated_key_is_fetched_from_jwks_uri(demo, stub):
    """A token signed with a key published after the demo fetched the JWKS."""
    browser = signed_in(demo)
    assert backchannel(demo, stub.logout_token(sid="sid-x")).status_code == 200  # JWKS cached: [k1]
    new_key = rsa_key("k2")
    stub.published.append(new_key)
    assert backchannel(demo, stub.logout_token(key=new_key)).status_code == 200
    assert not is_signed_in(browser)


BAD_TOKENS = {  # case: (changes, what the refusal says)
    "wrong iss": ({"iss": "https://evil.example.test"}, "'iss'"),
    "wrong aud": ({"aud": "forum"}, "'aud'"),
    "no events": ({"events": None}, "'events'"),
    "events without the logout event": (
        {"events": {"http://schemas.openid.net/event/other": {}}},
        "events has no",
    ),
    "the event is not an object": ({"events": {BACKCHANNEL_EVENT: "yes"}}, "events has no"),
    "a nonce": ({"nonce": "n-0S6_WzA2Mj"}, "nonce"),
    "expired": ({"iat": int(time.time()) - 900, "exp": int(time.time()) - 300}, "expired"),
    "issued long ago": ({"iat": int(time.time()) - 3600}, "too long ago"),
    "issued in the future": ({"iat": int(time.time()) + 3600}, "in the future"),
    "no exp": ({"exp": None}, "'exp'"),
    "no iat": ({"iat": None}, "'iat'"),
    "no jti": ({"jti": None}, "'jti'"),
    "neither sid nor sub": ({"sid": None, "sub": None}, "a sid, a sub or both"),
    "a bad signature": ({"key": "other"}, "bad_signature"),
    "an unknown key": ({"key": "unknown"}, "kid"),
    "the type of another token": ({"header": {"typ": "at+jwt"}}, "not typed 'at+jwt'"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_logout_token_is_refused_and_the_session_stays(demo, stub, case):
    changes, reason = BAD_TOKENS[case]
    if "key" in changes:  # another key with the published kid, or with a kid never published
        changes = {"key": rsa_key("k1" if changes["key"] == "other" else "k9")}
    browser = signed_in(demo)
    response = backchannel(demo, stub.logout_token(**changes))
    assert response.status_code == 400, case
    assert response.json["error"] == "invalid_request" and reason in response.json["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    assert is_signed_in(browser)


@pytest.mark.parametrize("token", [None, "", "not.a.jwt", "a" * 40])
def test_a_missing_or_malformed_logout_token_is_refused(demo, token):
    browser = signed_in(demo)
    response = backchannel(demo, token)
    assert response.status_code == 400 and response.json["error"] == "invalid_request"
    assert is_signed_in(browser)


def test_logout_goes_to_the_end_session_endpoint_and_checks_the_state(demo):
    browser = signed_in(demo)
    response = browser.post(f"{BASE}/logout")
    assert response.status_code == 302 and response.location.startswith(f"{END_SESSION}?")
    params = query(response.location)
    assert params["id_token_hint"] == "id-token-of-sid-1"
    assert params["post_logout_redirect_uri"] == f"{BASE}/"  # as registered in clients.yaml
    assert params["client_id"] == "modeler" and len(params["state"]) >= 16
    assert not is_signed_in(browser)  # the local session ended at once


def test_the_logout_state_is_accepted_once(demo):
    browser = signed_in(demo)
    params = query(browser.post(f"{BASE}/logout").location)
    back = open_page(browser, state=params["state"]).get_data(as_text=True)
    assert "You signed out at the Login Portal too." in back and "You are signed out" in back
    again = open_page(browser, state=params["state"]).get_data(as_text=True)
    assert "unknown state" in again


def test_a_forged_logout_state_is_refused(demo):
    browser = signed_in(demo)
    browser.post(f"{BASE}/logout")
    page = open_page(browser, state="forged").get_data(as_text=True)
    assert "unknown state" in page and "You signed out at the Login Portal" not in page


def test_logout_without_end_session_endpoint_ends_only_the_local_session():
    demo = demo_app(StubProvider(end_session=False).fetch_json)
    browser = signed_in(demo)
    response = follow(browser, browser.post(f"{BASE}/logout"))
    assert "Signed out of Modeler only" in response.get_data(as_text=True)
    assert not is_signed_in(browser)


def test_refresh_without_a_session_says_sign_in_first(demo):
    browser = demo.test_client()
    response = follow(browser, browser.post(f"{BASE}/refresh"))
    assert "Nothing to refresh" in response.get_data(as_text=True)


def test_an_unreachable_provider_is_a_clear_page(stub):
    def unreachable(url: str) -> dict[str, Any]:
        raise requests.ConnectionError(f"cannot reach {url}")

    demo = demo_app(unreachable)
    response = signed_in(demo).post(f"{BASE}/logout")
    assert response.status_code == 502 and "cannot reach" in response.get_data(as_text=True)
    assert backchannel(demo, stub.logout_token()).status_code == 400


# -- one whole sign-in against the provider app, in process -----------------------------


class ProviderAdapter(requests.adapters.BaseAdapter):
    """Sends the demo app's HTTP calls (Authlib's and fetch_json's) to the provider's test client."""

    def __init__(self, app) -> None:
        super().__init__()
        self.client = app.test_client()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url)
        answer = self.client.open(
            url.path,
            method=request.method,
            query_string=url.query,
            headers=dict(request.headers),
            data=request.body,
        )
        response = requests.Response()
        response.status_code, response._content = answer.status_code, answer.data
        response.headers, response.url, response.request = (
            CaseInsensitiveDict(answer.headers),
            request.url,
            request,
        )
        return response

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def real_time(clock):
    """Authlib checks ID tokens against the real time: the provider's clock shows it."""
    clock.now = datetime.fromtimestamp(int(time.time()), UTC)


@pytest.fixture
def portal(make_app, clock, monkeypatch):
    """The provider with the demo app registered as in clients.yaml, reachable by requests."""
    modeler = {
        "client_id": "modeler",
        "name": "Modeler",
        "redirect_uris": [f"{BASE}/callback"],
        "post_logout_redirect_uris": [f"{BASE}/"],
        "backchannel_logout_uri": f"{BASE}/backchannel-logout",
        "client_secret_sha256": conftest.sha(SECRET),
        "scopes": ["openid", "profile", "email", "phone", "offline_access"],
        "first_party": True,
    }
    forum = {
        **modeler,
        "client_id": "forum",
        "name": "Forum",
        "redirect_uris": [f"{FORUM}/callback"],
        "post_logout_redirect_uris": [f"{FORUM}/"],
        "backchannel_logout_uri": f"{FORUM}/backchannel-logout",
        "client_secret_sha256": conftest.sha(FORUM_SECRET),
    }
    app = make_app([*conftest.test_clients(), modeler, forum])
    adapter = ProviderAdapter(app)
    original = requests.Session.get_adapter
    monkeypatch.setattr(
        requests.Session,
        "get_adapter",
        lambda s, url: adapter if url.startswith(ISSUER) else original(s, url),
    )
    return app


def test_sign_in_userinfo_refresh_with_the_provider(portal, clock):
    user = make_user(portal)
    clock.advance(seconds=30)
    op = RP(portal, portal.test_client(), clock, user)
    demo = demo_app()  # no FETCH_JSON: discovery and JWKS over requests, like in production
    browser = demo.test_client()

    to_provider = browser.get(f"{BASE}/login")
    assert to_provider.status_code == 302 and to_provider.location.startswith(f"{ISSUER}/authorize?")
    params = query(to_provider.location)
    assert params["client_id"] == "modeler" and params["redirect_uri"] == f"{BASE}/callback"
    assert params["response_type"] == "code" and params["scope"] == "openid profile email offline_access"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["nonce"] and params["state"]

    at_provider = op.browser.get(to_provider.location.removeprefix(ISSUER))
    back = op.sign_in(at_provider)
    assert back.status_code == 302 and back.location.startswith(f"{BASE}/callback?")
    assert (
        browser.get(back.location).status_code == 302
    )  # Authlib redeemed the code and validated the ID token

    page = browser.get(f"{BASE}/").get_data(as_text=True)
    assert "Signed in as Buffy Summers" in page and "buffy@example.com" in page and user.sub in page
    assert page.count("Signed in as") == 1  # the note says how, not who again
    assert "You signed in at the Login Portal with your password and a one-time code." in page
    with browser.session_transaction(BASE) as cookie:
        local = demo.extensions["demo_rp"].sessions.get(cookie["local_id"])
    assert local.claims["sid"] and local.claims["acr"] and "otp" in local.claims["amr"]
    assert local.userinfo["email"] == "buffy@example.com"

    old = dict(local.token)
    refreshed = browser.post(f"{BASE}/refresh", follow_redirects=True).get_data(as_text=True)
    assert "Tokens refreshed" in refreshed
    assert local.token["access_token"] != old["access_token"]
    assert local.token["refresh_token"] != old["refresh_token"]  # rotated


FORUM = "http://127.0.0.1:5003"
FORUM_SECRET = "forum-secret-for-the-demo-app-tests-0000002"


def forum_app():
    """Forum, a second demo app of the same provider, as `make demo` runs it."""
    config = {"ISSUER": ISSUER, "CLIENT_ID": "forum", "CLIENT_SECRET": FORUM_SECRET, "NAME": "Forum"}
    return create_app({**config, "BASE_URL": FORUM, "SECRET_KEY": "test-forum"})


def sign_in_to_modeler(op: RP) -> str:
    """Sign in through Modeler (password and code at the provider); Modeler's local `sid`."""
    demo = demo_app()
    browser = demo.test_client()
    back = op.sign_in(op.browser.get(browser.get(f"{BASE}/login").location.removeprefix(ISSUER)))
    assert browser.get(back.location).status_code == 302
    with browser.session_transaction(BASE) as cookie:
        return demo.extensions["demo_rp"].sessions[cookie["local_id"]].claims["sid"]


def test_signed_in_at_the_portal_a_visit_signs_in_at_once(portal, clock):
    """The portal home's tiles link to the apps' home pages: a visit signs in there with no
    page of the provider shown (prompt=none), in the same provider session."""
    user = make_user(portal)
    clock.advance(seconds=30)
    op = RP(portal, portal.test_client(), clock, user)
    sid = sign_in_to_modeler(op)
    forum = forum_app().test_client()

    check = forum.get(f"{FORUM}/")
    assert check.status_code == 302 and query(check.location)["prompt"] == "none"
    answer = op.browser.get(check.location.removeprefix(ISSUER))
    assert answer.status_code == 302 and answer.location.startswith(f"{FORUM}/callback?code=")
    assert forum.get(answer.location).status_code == 302  # Authlib redeemed the code
    html = forum.get(f"{FORUM}/").get_data(as_text=True)
    assert "<h2>Signed in as Buffy Summers</h2>" in html and html.count("Signed in as") == 1
    assert "Single sign-on: you were already signed in at the Login Portal" in html
    assert sid in html

    # Another browser, signed in nowhere: the provider says login_required, the app says so.
    visitor, nobody = forum_app().test_client(), portal.test_client()
    answer = nobody.get(visitor.get(f"{FORUM}/").location.removeprefix(ISSUER))
    assert query(answer.location)["error"] == "login_required"
    page = visitor.get(visitor.get(answer.location).location).get_data(as_text=True)
    assert "<h2>You are not signed in</h2>" in page


def test_a_refused_sign_in_is_a_clear_page(demo):
    response = demo.test_client().get(
        f"{BASE}/callback", query_string={"error": "access_denied", "error_description": "The user said no"}
    )
    assert response.status_code == 400 and "The user said no" in response.get_data(as_text=True)


def test_a_callback_with_an_unknown_state_is_refused(demo):
    response = demo.test_client().get(f"{BASE}/callback", query_string={"code": "c", "state": "forged"})
    assert response.status_code == 400 and "mismatching_state" in response.get_data(as_text=True)


# -- the launcher of `make demo` ---------------------------------------------------------------


def test_make_demo_plays_every_app_of_clients_yaml():
    """UX defect 1: the six registrations of the shipped clients.yaml, each on its port with
    its development secret, its callback and its back-channel logout receiver."""
    playing, skipped = launcher.registrations(conftest.ROOT / "clients.yaml")
    assert skipped == {}
    assert [(r.client_id, r.name, r.port) for r in playing] == [
        ("modeler", "Modeler", 5001),
        ("mywem", "MyWEM", 5002),
        ("forum", "Forum", 5003),
        ("academy", "Academy", 5004),
        ("partner-portal", "Partner Portal", 5005),
        ("devops-portal", "DevOps Portal", 5006),
    ]
    assert sorted(app.hue for app in playing) == [30, 90, 150, 210, 270, 330]  # told apart at a glance
    registered = {
        c["client_id"]: c for c in yaml.safe_load((conftest.ROOT / "clients.yaml").read_text())["clients"]
    }
    for app in playing:
        entry = registered[app.client_id]
        config = app.config("http://127.0.0.1:5000")
        assert f"{config['BASE_URL']}/callback" in entry["redirect_uris"]
        assert f"{config['BASE_URL']}/backchannel-logout" == entry["backchannel_logout_uri"]
        assert conftest.sha(config["CLIENT_SECRET"]) == entry["client_secret_sha256"]
        assert config["DESCRIPTION"] == entry["description"] and config["ISSUER"] == "http://127.0.0.1:5000"


def test_make_demo_names_the_registrations_it_cannot_play(tmp_path):
    good = {
        "client_id": "reports",
        "name": "Reports",
        "redirect_uris": ["http://127.0.0.1:5009/callback"],
        "post_logout_redirect_uris": ["http://127.0.0.1:5009/"],
        "backchannel_logout_uri": "http://127.0.0.1:5009/backchannel-logout",
        "client_secret_sha256": conftest.sha("dev-secret-reports"),
    }
    entries = [
        good,
        {**good, "client_id": "real", "client_secret_sha256": conftest.sha("a real secret")},
        {**good, "client_id": "remote", "redirect_uris": ["https://reports.example.com/callback"]},
        {**good, "client_id": "no-callback", "redirect_uris": ["http://127.0.0.1:5009/cb"]},
        {**good, "client_id": "quiet", "backchannel_logout_uri": None},
        {**good, "client_id": "elsewhere", "post_logout_redirect_uris": ["http://127.0.0.1:5009/bye"]},
    ]
    clients_file = tmp_path / "clients.yaml"
    clients_file.write_text(yaml.safe_dump({"clients": entries}))
    playing, skipped = launcher.registrations(clients_file)
    assert [r.client_id for r in playing] == ["reports"] and playing[0].base_url == "http://127.0.0.1:5009"
    assert skipped == {
        "real": "its secret is not the development secret dev-secret-real",
        "remote": "its redirect URI is not on http://127.0.0.1:PORT",
        "no-callback": "no redirect URI ending in /callback",
        "quiet": "its backchannel_logout_uri is not http://127.0.0.1:5009/backchannel-logout",
        "elsewhere": "its post_logout_redirect_uris do not name http://127.0.0.1:5009/",
    }
    text = launcher.banner("http://127.0.0.1:5000", playing, skipped)
    assert text.splitlines()[:2] == [
        "Login Portal  http://127.0.0.1:5000/",
        "Reports       http://127.0.0.1:5009/",
    ]
    assert "(not started: real: its secret is not the development secret dev-secret-real)" in text


def test_make_demo_runs_the_launcher():
    # run from inside `make test` too: no "make[1]: Leaving directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo"], cwd=conftest.ROOT, capture_output=True, text=True, env=env
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert dry_run.stdout.splitlines()[-1].endswith("/python -m examples.launcher")
