"""A demo relying party (RP) of the Login Portal, written the way a real app would be.

Sign-in: the authorization code flow with PKCE (S256) and a nonce, run by
Authlib's Flask client from the provider's discovery document; Authlib validates
the ID token. Then userinfo, a refresh, RP-Initiated Logout 1.0, and a receiver
for Back-Channel Logout 1.0 (logout tokens are checked in provider.py). Local
sessions live in server memory under a random id kept in the Flask cookie; each
remembers the provider's `sid` and `sub`, so a logout token (which comes with no
browser cookie) can end them. Run one with `python -m examples.demo_rp`.
"""

from __future__ import annotations

import secrets
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from authlib.common.urls import add_params_to_uri
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from flask import Blueprint, Flask, current_app, flash, jsonify, redirect, render_template, request, session
from joserfc.errors import JoseError
from werkzeug.wrappers import Response

from .provider import Provider, discovery_url, fetch_json

SCOPE = "openid profile email offline_access"

bp = Blueprint("demo", __name__)


@dataclass
class LocalSession:
    """What this app remembers about one signed-in browser."""

    token: dict[str, Any]  # the token response: access, refresh and ID token
    claims: dict[str, Any]  # the validated ID token's claims
    userinfo: dict[str, Any]
    refreshed_at: float | None = None


@dataclass
class Demo:
    """One demo app: its registration, its Authlib client and its local sessions."""

    name: str
    client_id: str
    base_url: str  # this app's own URL, e.g. http://127.0.0.1:5001
    portal: FlaskOAuth2App  # Authlib's client of the provider, registered as "portal"
    provider: Provider
    sessions: dict[str, LocalSession] = field(default_factory=dict)  # by random id

    @property
    def hue(self) -> int:
        """A colour per app, so two instances side by side are told apart at a glance."""
        return zlib.crc32(self.client_id.encode()) % 360

    def end_sessions(self, sid: str | None, sub: str | None) -> int:
        """End every local session of that provider session `sid` and/or user `sub`; how many."""
        ended = [
            key
            for key, local in list(self.sessions.items())
            if (sid or sub)
            and (not sid or local.claims.get("sid") == sid)
            and (not sub or local.claims["sub"] == sub)
        ]
        for key in ended:
            self.sessions.pop(key, None)
        return len(ended)


def create_app(config: dict[str, Any]) -> Flask:
    """The demo app. `config`: ISSUER, CLIENT_ID, CLIENT_SECRET, BASE_URL, optional NAME,
    SECRET_KEY and FETCH_JSON (a url -> dict callable for discovery and JWKS; tests pass one)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.get("SECRET_KEY") or secrets.token_hex(32),
        # Cookies do not tell ports apart: the provider and each demo app on 127.0.0.1 need their own.
        SESSION_COOKIE_NAME=f"demo_{config['CLIENT_ID']}_session",
        SESSION_COOKIE_SAMESITE="Lax",  # no cross-site POST carries it: CSRF on /refresh and /logout
    )
    portal = OAuth(app).register(
        name="portal",
        server_metadata_url=discovery_url(config["ISSUER"]),
        client_id=config["CLIENT_ID"],
        client_secret=config["CLIENT_SECRET"],
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"},
    )
    provider = Provider(config["ISSUER"], config.get("FETCH_JSON") or fetch_json)
    name, base_url = config.get("NAME") or config["CLIENT_ID"], config["BASE_URL"].rstrip("/")
    app.extensions["demo_rp"] = Demo(name, config["CLIENT_ID"], base_url, portal, provider)
    app.register_blueprint(bp)
    return app


def demo() -> Demo:
    return current_app.extensions["demo_rp"]


def current() -> LocalSession | None:
    """This browser's local session, unless it ended (a back-channel logout may end it)."""
    local = demo().sessions.get(session.get("local_id", ""))
    if local is None:
        session.pop("local_id", None)
    return local


def home_page() -> Response:
    return redirect(f"{demo().base_url}/")


@bp.app_template_filter("when")
def when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if timestamp else "—"


@bp.app_template_filter("short")
def short(token: str | None) -> str:
    """Enough of a token to see that it changed, not enough to use it."""
    return f"{token[:12]}…{token[-6:]}" if token else "—"


@bp.get("/")
def home() -> str | Response:
    if "state" in request.args:  # back from the provider's end_session_endpoint
        expected = session.pop("logout_state", None)
        if expected and secrets.compare_digest(expected, request.args["state"]):
            flash("You signed out at the Login Portal too.")
        else:
            flash("A logout response with an unknown state was ignored.", "error")
        return home_page()  # without the state in the address bar
    return render_template("demo.html", demo=demo(), local=current())


@bp.get("/login")
def login() -> Response:
    """To the provider's sign-in page; Authlib adds state, nonce and the PKCE S256 challenge."""
    return demo().portal.authorize_redirect(f"{demo().base_url}/callback")


@bp.get("/callback")
def callback() -> Response:
    """Back from the provider: Authlib checks the state, redeems the code with the PKCE
    verifier and validates the ID token (signature, iss, aud, exp, iat, nonce, at_hash)."""
    app = demo()
    token = app.portal.authorize_access_token()
    claims = dict(token["userinfo"])  # Authlib's name for the validated ID token claims
    userinfo = dict(app.portal.userinfo(token=token))
    if userinfo.get("sub") != claims["sub"]:  # Core 1.0 section 5.3.2
        raise OAuthError("invalid_userinfo", "userinfo is about another user than the ID token")
    session.clear()  # a fresh cookie for a fresh sign-in
    session["local_id"] = local_id = secrets.token_urlsafe(32)
    app.sessions[local_id] = LocalSession(dict(token), claims, userinfo)
    flash(f"Signed in as {userinfo.get('name') or claims['sub']}.")
    return home_page()


@bp.post("/refresh")
def refresh() -> Response:
    """The refresh_token grant; the provider rotates the refresh token on each use."""
    local, app = current(), demo()
    if local is None or "refresh_token" not in local.token:
        flash("Nothing to refresh: sign in (with offline_access) first.", "error")
        return home_page()
    token = dict(
        app.portal.fetch_access_token(grant_type="refresh_token", refresh_token=local.token["refresh_token"])
    )
    if "id_token" in token:  # Core 1.0 section 12.2: a new ID token, about the same user
        claims = app.portal.parse_id_token(token, nonce=None)
        if claims["sub"] != local.claims["sub"]:
            raise OAuthError("invalid_token", "the refreshed ID token is about another user")
        local.claims = {**local.claims, **claims}
    local.token, local.refreshed_at = {**local.token, **token}, time.time()
    flash("Tokens refreshed: a new access token and a new refresh token.")
    return home_page()


@bp.post("/logout")
def logout() -> Response:
    """RP-Initiated Logout 1.0: end the local session, then the provider's if it offers that."""
    app = demo()
    local = app.sessions.pop(session.pop("local_id", ""), None)
    if local is None:
        flash("You were already signed out.")
        return home_page()
    endpoint = app.provider.metadata().get("end_session_endpoint")
    if not endpoint:
        flash(f"Signed out of {app.name} only: the provider has no end_session_endpoint.", "error")
        return home_page()
    state = session["logout_state"] = secrets.token_urlsafe(16)
    params = {
        "id_token_hint": local.token["id_token"],
        "post_logout_redirect_uri": f"{app.base_url}/",  # as registered in clients.yaml
        "client_id": app.client_id,
        "state": state,  # checked by home() when the provider sends the browser back
    }
    return redirect(add_params_to_uri(endpoint, params))


@bp.post("/backchannel-logout")
def backchannel_logout() -> tuple[Response, int, dict[str, str]]:
    """Back-Channel Logout 1.0: the provider POSTs a logout token; end the sessions it names."""
    no_store = {"Cache-Control": "no-store"}
    try:
        claims = demo().provider.verify_logout_token(request.form.get("logout_token", ""), demo().client_id)
    except (JoseError, ValueError, OAuthError, requests.RequestException) as error:
        current_app.logger.warning("logout token refused: %s", error)
        return jsonify(error="invalid_request", error_description=str(error)), 400, no_store
    ended = demo().end_sessions(claims.get("sid"), claims.get("sub"))
    current_app.logger.info(
        "back-channel logout of sid %s: %d local session(s) ended", claims.get("sid"), ended
    )
    return Response(), 200, no_store


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok", "client_id": demo().client_id}


@bp.app_errorhandler(OAuthError)
@bp.app_errorhandler(JoseError)  # an ID token that fails validation
@bp.app_errorhandler(requests.RequestException)
def provider_trouble(error: Exception) -> tuple[str, int]:
    """A refused sign-in, refresh or logout, a bad ID token or an unreachable provider: say so."""
    current_app.logger.warning("%s: %s", type(error).__name__, error)
    flash(f"That did not work: {error}", "error")
    status = 502 if isinstance(error, requests.RequestException) else 400
    return render_template("demo.html", demo=demo(), local=current()), status
