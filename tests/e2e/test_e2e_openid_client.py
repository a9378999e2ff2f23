"""A certified relying-party library, unmodified, against the running
provider (SPEC: "any certified RP library must work against it"): npm
openid-client v6 in tests/e2e/openid_client_check.mjs. The browser signs a
person in (password, then an authenticator code) between the library's
authorization URL and its token exchange."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from .conftest import NODE_CLIENT_SECRET
from .people import enter_code, sign_in_with_password

HERE = Path(__file__).parent
SCRIPT = HERE / "openid_client_check.mjs"


def openid_client(command: str, *args: str, env: dict[str, str]) -> dict:
    """Run one half of the script; fail with what the library reported."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is missing: `make test` installs it (tests/e2e/install-deps.sh)")
    if not (HERE / "node_modules" / "openid-client").is_dir():
        pytest.skip("openid-client is not installed: `make test` runs `npm ci` in tests/e2e")
    done = subprocess.run(
        [node, str(SCRIPT), command, *args], cwd=HERE, env=env, capture_output=True, text=True, timeout=60
    )
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    assert done.returncode == 0 and "error" not in result, (
        f"openid-client {command} failed: {done.stdout}{done.stderr}"
    )
    return result


def test_openid_client_signs_in_with_pkce_validates_the_tokens_refreshes_and_logs_out(
    page: Page, shots, provider, enrolled_account, rp_callback, node_client, tmp_path
):
    env = {
        **os.environ,
        "ISSUER": provider.url,
        "CLIENT_ID": node_client["client_id"],
        "CLIENT_SECRET": NODE_CLIENT_SECRET,
        "REDIRECT_URI": node_client["redirect_uris"][0],
        "POST_LOGOUT_REDIRECT_URI": node_client["post_logout_redirect_uris"][0],
    }
    checks = str(tmp_path / "checks.json")
    authorization_url = openid_client("start", checks, env=env)["authorization_url"]
    asked = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
    assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"], asked

    # The person signs in on the portal: password, then the authenticator's code.
    page.goto(authorization_url)
    page.wait_for_url(f"{provider.url}/login?**")
    expect(page.get_by_text("to continue to openid-client check")).to_be_visible()
    sign_in_with_password(page, enrolled_account)
    page.wait_for_url(f"{provider.url}/login/code")
    shots("code-for-openid-client")
    enter_code(page, enrolled_account.authenticator.code())
    page.wait_for_url(f"{rp_callback.url}/cb?**")
    callback_url, answer = rp_callback.last("/cb")
    assert answer["iss"] == provider.url and answer["state"] == asked["state"], answer

    result = openid_client("finish", checks, callback_url, env=env)
    claims = result["id_token_claims"]
    assert claims["iss"] == provider.url and claims["aud"] in (
        node_client["client_id"],
        [node_client["client_id"]],
    )
    assert claims["nonce"] == asked["nonce"]
    assert {"pwd", "mfa"} <= set(claims["amr"]), claims
    assert claims["sid"] and claims["auth_time"] and claims["acr"], claims
    assert "@" not in claims["sub"], "sub is never the email address"
    assert result["token_type"].lower() == "bearer" and result["expires_in"] > 0, result
    userinfo = result["userinfo"]
    assert userinfo["sub"] == claims["sub"]
    assert (userinfo["name"], userinfo["email"]) == (enrolled_account.name, enrolled_account.email), userinfo
    assert userinfo["email_verified"] is True, userinfo

    assert result["refresh_token_issued"], "offline_access was asked for: a refresh token is expected"
    refreshed = result["refreshed"]
    assert refreshed["refresh_token_rotated"], "refresh tokens rotate on each use"
    assert refreshed["userinfo"]["sub"] == claims["sub"]
    if refreshed["id_token_claims"]:
        assert refreshed["id_token_claims"]["sub"] == claims["sub"]

    # The library's end-session URL signs the person out and comes back with the state.
    end_session = result["end_session_url"]
    assert end_session.startswith(f"{provider.url}/logout?"), end_session
    page.goto(end_session)
    page.wait_for_url(f"{rp_callback.url}/logged-out**")
    _, back = rp_callback.last("/logged-out")
    assert back.get("state") == result["logout_state"], back
    page.goto(f"{provider.url}/")
    page.wait_for_url(f"{provider.url}/login**")
