"""A demo relying party (RP) of the Login Portal, written the way a real app would be.

Sign-in: the authorization code flow with PKCE (S256) and a nonce, run by
Authlib's Flask client from the provider's discovery document; Authlib validates
the ID token. A visitor without a session is first checked silently
(`prompt=none`, OIDC Core 3.1.2.1): whoever is signed in at the portal is signed
in here at once (single sign-on), so the portal home's tiles open signed-in apps.
Then userinfo, a refresh, RP-Initiated Logout 1.0, and a receiver for
Back-Channel Logout 1.0 (logout tokens are checked in provider.py). Local
sessions live in server memory under a random id kept in the Flask cookie; each
remembers the provider's `sid` and `sub`, so a logout token (which comes with no
browser cookie) can end them. Run one with `python -m examples.demo_rp`, all the
registered apps with `python -m examples.launcher` (`make demo`).
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
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from joserfc.errors import JoseError
from werkzeug.wrappers import Response

from .provider import Provider, discovery_url, fetch_json

SCOPE = "openid profile email offline_access"
# The portal's own pages an app links to, below the issuer (the discovery document's `issuer`).
PORTAL_PAGES = {"home": "/", "details": "/account", "mfa": "/account/mfa"}
# prompt=none answers that only say "not without the person" (OIDC Core 3.1.2.6).
NOT_SIGNED_IN = {"login_required", "consent_required", "account_selection_required"}
# Signed in at the portal, but this app asks for more (a code, when it requires MFA).
ASK_THE_PERSON = "interaction_required"

bp = Blueprint("demo", __name__)


@dataclass
class LocalSession:
    """What this app remembers about one signed-in browser."""

    token: dict[str, Any]  # the token response: access, refresh and ID token
    claims: dict[str, Any]  # the validated ID token's claims
    userinfo: dict[str, Any]
    refreshed_at: float | None = None


class PortalClient(FlaskOAuth2App):
    """Authlib's client of the provider, reading the discovery document through
    `Provider` (fetched once, its issuer checked), so the sign-in and the pages'
    links to the portal come from the same document."""

    provider: Provider

    def load_server_metadata(self) -> dict[str, Any]:
        if "_loaded_at" not in self.server_metadata:
            self.server_metadata.update(self.provider.metadata(), _loaded_at=time.time())
        return self.server_metadata


@dataclass
class Demo:
    """One demo app: its registration, its Authlib client and its local sessions."""

    name: str
    client_id: str
    base_url: str  # this app's own URL, e.g. http://127.0.0.1:5001
    portal: PortalClient  # Authlib's client of the provider, registered as "portal"
    provider: Provider
    description: str = ""  # the line under the name, as on the portal home
    chosen_hue: int | None = None  # HUE: make demo spreads its apps over the colour wheel
    sessions: dict[str, LocalSession] = field(default_factory=dict)  # by random id

    @property
    def hue(self) -> int:
        """A colour per app, so two instances side by side are told apart at a glance."""
        return self.chosen_hue if self.chosen_hue is not None else zlib.crc32(self.client_id.encode()) % 360

    @property
    def initial(self) -> str:
        """The app's first letter, for its icon."""
        return (self.name[:1] or "?").upper()

    def portal_links(self) -> dict[str, str]:
        """The portal's home, My details and Manage MFA pages, below the issuer the
        discovery document names; none while the provider cannot be reached."""
        try:
            issuer = self.provider.metadata()["issuer"].rstrip("/")
        except (OAuthError, requests.RequestException, ValueError, KeyError) as error:
            current_app.logger.warning("no links to the portal: %s", error)
            return {}
        return {page: f"{issuer}{path}" for page, path in PORTAL_PAGES.items()}

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
    DESCRIPTION, HUE (0–359), SECRET_KEY and FETCH_JSON (a url -> dict callable for discovery and JWKS;
    tests pass one)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.get("SECRET_KEY") or secrets.token_hex(32),
        # Cookies do not tell ports apart: the provider and each demo app on 127.0.0.1 need their own.
        SESSION_COOKIE_NAME=f"demo_{config['CLIENT_ID']}_session",
        SESSION_COOKIE_SAMESITE="Lax",  # no cross-site POST carries it: CSRF on /refresh and /logout
    )
    provider = Provider(config["ISSUER"], config.get("FETCH_JSON") or fetch_json)
    portal = OAuth(app).register(
        name="portal",
        client_cls=PortalClient,
        server_metadata_url=discovery_url(config["ISSUER"]),
        client_id=config["CLIENT_ID"],
        client_secret=config["CLIENT_SECRET"],
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"},
    )
    portal.provider = provider
    name, base_url = config.get("NAME") or config["CLIENT_ID"], config["BASE_URL"].rstrip("/")
    app.extensions["demo_rp"] = Demo(
        name,
        config["CLIENT_ID"],
        base_url,
        portal,
        provider,
        config.get("DESCRIPTION") or "",
        config.get("HUE"),
    )
    app.register_blueprint(bp)
    return app


def demo() -> Demo:
    return current_app.extensions["demo_rp"]


def current() -> LocalSession | None:
    """This browser's local session, unless it ended (a back-channel logout may end it)."""
    local = demo().sessions.get(session.get("local_id", ""))
    if local is None and session.pop("local_id", None):
        session["signed_out"] = True  # it had one: the page says "signed out", not "not signed in"
    return local


def page(status: int = 200) -> tuple[str, int]:
    """The app's one page, for this browser's local session or for a visitor."""
    return render_template(
        "demo.html",
        demo=demo(),
        local=current(),
        signed_out=session.get("signed_out", False),
        portal=demo().portal_links(),
    ), status


def silent_answer(error: str) -> str:
    """What a `prompt=none` request's error tells this app: "visitor" (nobody is signed
    in at the portal, or not without being asked: show the page), "ask" (signed in, but
    this app needs the person, e.g. for a code: ask them once) or "refused" (a real error)."""
    if error in NOT_SIGNED_IN:
        return "visitor"
    return "ask" if error == ASK_THE_PERSON else "refused"


def start_sign_in(**params: str) -> Response:
    """To the provider's authorization endpoint; Authlib adds state, nonce and the PKCE
    S256 challenge. With prompt=none the provider answers at once, without a page."""
    app = demo()
    found = app.portal.create_authorization_url(f"{app.base_url}/callback", **params)
    app.portal.save_authorize_data(redirect_uri=f"{app.base_url}/callback", **found)
    if params.get("prompt") == "none":
        session["silent_state"] = found["state"]
    return redirect(found["url"])


def silent_refusal(state: str) -> str | None:
    """The error of the answer to our own prompt=none request, else None; the request's
    state is used up either way."""
    if not same(state, session.pop("silent_state", "")) or "error" not in request.args:
        return None
    demo().portal.framework.clear_state_data(session, state)  # Authlib keeps it until used
    return request.args["error"]


def after_silent_refusal(error: str) -> Response:
    """Nobody (enough) signed in at the portal: the visitor's page, or once the sign-in
    pages when this app needs the person (its require_mfa asks a trusted computer for a code)."""
    session["sso_checked"] = True  # the next visit shows the page instead of asking again
    if silent_answer(error) == "ask":
        flash(
            f"You are signed in at the Login Portal, but {demo().name} asks you to confirm it's you "
            "with a one-time code: sign in to continue."
        )
        return start_sign_in()
    return home_page()


def after_refusal(error: str, state: str) -> Response:
    """The portal answered our sign-in request with an error: access_denied when the
    person chose Cancel there. This app's page, saying so, without asking again."""
    demo().portal.framework.clear_state_data(session, state)
    session["sso_checked"] = True
    if error == "access_denied":
        flash("You cancelled the sign-in at the Login Portal.")
    else:
        flash(f"The Login Portal refused the sign-in ({error}).", "error")
    return home_page()


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of a value from the request with ours (any characters)."""
    return bool(expected) and secrets.compare_digest(given.encode(), expected.encode())


def signed_in_note(claims: dict[str, Any], silent: bool) -> str:
    """The line shown after a sign-in: how the person got in (the heading says who)."""
    if silent:
        return "Single sign-on: you were already signed in at the Login Portal, so no password or code was asked."
    amr = set(claims.get("amr") or [])
    if amr & {"otp", "sms", "mfa"}:
        return "You signed in at the Login Portal with your password and a one-time code."
    if "pwd" in amr:
        return "You signed in at the Login Portal with your password (this computer is trusted)."
    return "You signed in at the Login Portal."


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
def home() -> tuple[str, int] | Response:
    """The app's page. A visitor is first checked at the portal (prompt=none), once per
    visit: signed in there, signed in here."""
    if "state" in request.args:  # back from the provider's end_session_endpoint
        expected = session.pop("logout_state", None)
        if same(request.args["state"], expected or ""):
            flash("You signed out at the Login Portal too.")
        else:
            flash("A logout response with an unknown state was ignored.", "error")
        return home_page()  # without the state in the address bar
    if current() is None and not session.pop("sso_checked", False):
        return start_sign_in(prompt="none")
    return page()


@bp.get("/login")
def login() -> Response:
    """To the provider's sign-in page."""
    return start_sign_in()


@bp.get("/callback")
def callback() -> Response:
    """Back from the provider: Authlib checks the state, redeems the code with the PKCE
    verifier and validates the ID token (signature, iss, aud, exp, iat, nonce, at_hash)."""
    app = demo()
    state = request.args.get("state", "")
    silent = same(state, session.get("silent_state", ""))
    error = silent_refusal(state)
    if error and silent_answer(error) != "refused":
        return after_silent_refusal(error)
    if "error" in request.args and app.portal.framework.get_state_data(session, state) is not None:
        return after_refusal(request.args["error"], state)
    token = app.portal.authorize_access_token()
    claims = dict(token["userinfo"])  # Authlib's name for the validated ID token claims
    userinfo = dict(app.portal.userinfo(token=token))
    if userinfo.get("sub") != claims["sub"]:  # Core 1.0 section 5.3.2
        raise OAuthError("invalid_userinfo", "userinfo is about another user than the ID token")
    session.clear()  # a fresh cookie for a fresh sign-in
    session["local_id"] = local_id = secrets.token_urlsafe(32)
    app.sessions[local_id] = LocalSession(dict(token), claims, userinfo)
    flash(signed_in_note(claims, silent))
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
    session["signed_out"] = True
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


@bp.get("/favicon.svg")
def favicon() -> Response:
    """The app's icon: its initial on its colour."""
    svg = render_template("favicon.svg", demo=demo())
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@bp.get("/favicon.ico")
def favicon_ico() -> Response:
    """Browsers ask for /favicon.ico before reading the page's icon link."""
    return redirect(url_for("demo.favicon"), 301)


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
    return page(502 if isinstance(error, requests.RequestException) else 400)
