"""The demo relying party (examples/demo_rp): its back-channel logout receiver
and logout against a stub provider whose keys the tests hold, and one whole
sign-in against the real provider app, in process (no network)."""

from __future__ import annotations

import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import conftest
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from requests.structures import CaseInsensitiveDict
from rp import RP, make_user, query

sys.path.insert(0, str(conftest.ROOT))  # examples/ is no part of the installed package
from examples.demo_rp import LocalSession, create_app  # noqa: E402
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

    def __init__(self, end_session: bool = True) -> None:
        self.key = rsa_key("k1")
        self.published = [self.key]
        self.metadata = {
            "issuer": ISSUER,
            "jwks_uri": f"{ISSUER}/jwks.json",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            **({"end_session_endpoint": END_SESSION} if end_session else {}),
        }

    def fetch_json(self, url: str) -> dict[str, Any]:
        if url == f"{ISSUER}/.well-known/openid-configuration":
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


def demo_app(fetch_json=None):
    """Modeler as `make demo` runs it; `fetch_json` stands in for the provider (None: over HTTP)."""
    config = {
        "ISSUER": ISSUER,
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


def is_signed_in(browser) -> bool:
    page = browser.get(f"{BASE}/").get_data(as_text=True)
    assert ("You are signed out" in page) != ("Signed in as" in page)
    return "Signed in as Buffy Summers" in page


def backchannel(demo, token: str | None):
    data = {} if token is None else {"logout_token": token}
    return demo.test_client().post(f"{BASE}/backchannel-logout", data=data)


def test_signed_out_page_names_the_app_and_offers_sign_in(demo):
    page = demo.test_client().get(f"{BASE}/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<h1>Modeler</h1>" in html and "Sign in with the Login Portal" in html
    assert 'href="/static/demo.css"' in html and "https://" not in html  # its own stylesheet, no CDN
    with demo.test_client().get(f"{BASE}/static/demo.css") as css:
        assert css.status_code == 200 and css.mimetype == "text/css"


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
    back = browser.get(f"{BASE}/", query_string={"state": params["state"]}, follow_redirects=True).get_data(
        as_text=True
    )
    assert "You signed out at the Login Portal too." in back and "You are signed out" in back
    again = browser.get(f"{BASE}/", query_string={"state": params["state"]}, follow_redirects=True).get_data(
        as_text=True
    )
    assert "unknown state" in again


def test_a_forged_logout_state_is_refused(demo):
    browser = signed_in(demo)
    browser.post(f"{BASE}/logout")
    page = browser.get(f"{BASE}/", query_string={"state": "forged"}, follow_redirects=True).get_data(
        as_text=True
    )
    assert "unknown state" in page and "You signed out at the Login Portal" not in page


def test_logout_without_end_session_endpoint_ends_only_the_local_session():
    demo = demo_app(StubProvider(end_session=False).fetch_json)
    browser = signed_in(demo)
    response = browser.post(f"{BASE}/logout", follow_redirects=True)
    assert "Signed out of Modeler only" in response.get_data(as_text=True)
    assert not is_signed_in(browser)


def test_refresh_without_a_session_says_sign_in_first(demo):
    response = demo.test_client().post(f"{BASE}/refresh", follow_redirects=True)
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
    app = make_app([*conftest.test_clients(), modeler])
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
    with browser.session_transaction(BASE) as cookie:
        local = demo.extensions["demo_rp"].sessions.get(cookie["local_id"])
    assert local.claims["sid"] and local.claims["acr"] and "otp" in local.claims["amr"]
    assert local.userinfo["email"] == "buffy@example.com"

    old = dict(local.token)
    refreshed = browser.post(f"{BASE}/refresh", follow_redirects=True).get_data(as_text=True)
    assert "Tokens refreshed" in refreshed
    assert local.token["access_token"] != old["access_token"]
    assert local.token["refresh_token"] != old["refresh_token"]  # rotated


def test_a_refused_sign_in_is_a_clear_page(demo):
    response = demo.test_client().get(
        f"{BASE}/callback", query_string={"error": "access_denied", "error_description": "The user said no"}
    )
    assert response.status_code == 400 and "The user said no" in response.get_data(as_text=True)


def test_a_callback_with_an_unknown_state_is_refused(demo):
    response = demo.test_client().get(f"{BASE}/callback", query_string={"code": "c", "state": "forged"})
    assert response.status_code == 400 and "mismatching_state" in response.get_data(as_text=True)
