"""Blueprint for the browser side of the protocol: `/authorize`, consent,
and the protocol error page.

A request travels: Authlib validates it → `interaction.next_step` says what
is missing → the request is parked and the browser signs in (login.py) or
consents → it resumes here with `?tx=` → Authlib issues the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)
from flask import Blueprint, Flask, Response, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from joserfc import jwt
from joserfc.errors import JoseError
from werkzeug.exceptions import TooManyRequests

from . import interaction, keys, oauth, sessions, transactions
from .clients import Client, query_client
from .db import db, now
from .forms import ConfirmForm
from .models import Consent, LoginTransaction, SsoSession
from .oauth import ReadRequest, authorization_server
from .security import csrf, spend

bp = Blueprint("authorize", __name__)
DESCRIPTIONS = {  # for errors Authlib raises without one (printable ASCII, no quotes)
    "login_required": "The user is not signed in.",
    "consent_required": "The user has not approved this app yet.",
    "interaction_required": "The user must interact with the provider.",
    "request_not_supported": "Request objects are not supported; send the parameters in the query.",
    "request_uri_not_supported": "request_uri is not supported; send the parameters in the query.",
    "access_denied": "The user did not allow the request.",
    "invalid_request": "The request is not valid.",
}
INTERACTION_ERRORS = {
    "login_required": LoginRequiredError,
    "consent_required": ConsentRequiredError,
    "interaction_required": InteractionRequiredError,
}
SCOPE_TEXT = {
    "openid": _l("Know who you are (a stable, anonymous user id)"),
    "profile": _l("See your name"),
    "email": _l("See your email address"),
    "phone": _l("See your verified mobile number"),
    "offline_access": _l("Stay connected when you are not using it"),
}


# -- answering the RP ------------------------------------------------------------


def respond(redirect_uri: str, params: list[tuple[str, str]], response_mode: str | None) -> Response:
    """Deliver an authorization response (success or error) in the requested mode."""
    if response_mode == "form_post":
        response = Response(render_template("authorize/form_post.html", action=redirect_uri, params=params))
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(redirect_uri))
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'self'; style-src 'self'; form-action {origin}; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["Cache-Control"] = "no-store"
        return response
    return redirect(add_params_to_uri(redirect_uri, params), 302)


def redirect_params(response: Response, redirect_uri: str) -> list[tuple[str, str]]:
    """The parameters Authlib added to the redirect URI (its own query comes first)."""
    own = len(parse_qsl(urlsplit(redirect_uri).query, keep_blank_values=True))
    return parse_qsl(urlsplit(response.location).query, keep_blank_values=True)[own:]


def error_response(error: OAuth2Error, params: Any) -> Response:
    """A redirect with `error`, `state` and `iss` when the redirect URI is
    trusted; otherwise a page, never a redirect (RFC 6749 4.1.2.1)."""
    if not error.redirect_uri:
        return error_page(error.error, error.description, 400, query_client(params.get("client_id")))
    body = [
        ("error", error.error),
        ("error_description", error.description or DESCRIPTIONS.get(error.error, "")),
    ]
    if params.get("state") is not None and transactions.fits("state", params.get("state")):
        body.append(("state", params.get("state")))
    body.append(("iss", current_app.config["OIDC_ISSUER"]))
    return respond(error.redirect_uri, body, params.get("response_mode"))


def error_page(error: str, description: str | None, status: int, client: Client | None = None) -> Response:
    """The page for a request that cannot be answered at its redirect URI. When
    the app is known, the way back is its registered home URL (clients.yaml),
    never the redirect URI the request named."""
    hint = {
        "invalid_client": _("The app that sent you here is not registered with this portal."),
        "invalid_request": _("The app that sent you here made a request this portal cannot answer."),
    }.get(error)
    page = render_template(
        "authorize/error.html",
        title=_("This sign-in link does not work"),
        error=error,
        message=description,
        hint=hint,
        client=client if client is not None and client.home_url else None,
    )
    return Response(page, status=status)


# -- the request ------------------------------------------------------------------


def _check_extras(params: Any, grant: Any) -> None:
    """What Authlib leaves to us (DESIGN.md trap 7), as the spec's errors."""
    uri = grant.redirect_uri
    payload = grant.request.payload
    try:
        transactions.check_sizes([(k, v) for k, values in payload.datalist.items() for v in values])
    except ValueError as exc:
        raise InvalidRequestError(str(exc), redirect_uri=uri) from None
    if params.get("request"):
        raise RequestNotSupportedError(redirect_uri=uri)
    if params.get("request_uri"):
        raise RequestURINotSupportedError(redirect_uri=uri)
    if params.get("response_mode") not in (None, "query", "form_post"):
        raise InvalidRequestError("Unsupported response_mode.", redirect_uri=uri)
    if "openid" not in (params.get("scope") or "").split():
        raise InvalidRequestError("The openid scope is required.", redirect_uri=uri)
    try:
        interaction.parse_prompt(params.get("prompt"))
        interaction.parse_max_age(params.get("max_age"))
        _requested_claims(params)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), redirect_uri=uri) from None


def _requested_claims(params: Any) -> dict[str, Any] | None:
    """The `claims` parameter's userinfo part (OIDC Core 5.5)."""
    raw = params.get("claims")
    if not raw:
        return None
    try:
        claims = json.loads(raw)
    except ValueError:
        raise ValueError("The claims parameter is not valid JSON.") from None
    if not isinstance(claims, dict):
        raise ValueError("The claims parameter must be a JSON object.")
    userinfo = claims.get("userinfo") or {}
    return dict(userinfo) if isinstance(userinfo, dict) else None


def hint_subject(id_token_hint: str | None) -> str | None:
    """`sub` of an ID token we issued (expired ones too), or ValueError."""
    if not id_token_hint:
        return None
    try:
        token = jwt.decode(id_token_hint, keys.ring().verification_keys(), algorithms=list(keys.ALGS))
    except (JoseError, ValueError):
        raise ValueError("id_token_hint is not an ID token issued by this provider.") from None
    return token.claims.get("sub")


def policy_request(
    params: Any, client: Client, tx: LoginTransaction | None, sso: SsoSession | None
) -> interaction.Request:
    """The parts of the request the login policy decides on. Consent given on a
    parked request counts only for the SSO session that gave it."""
    return interaction.Request(
        prompt=interaction.parse_prompt(params.get("prompt")),
        max_age=interaction.parse_max_age(params.get("max_age")),
        id_token_hint_sub=hint_subject(params.get("id_token_hint")),
        acr_values=tuple((params.get("acr_values") or "").split()),
        require_mfa=client.require_mfa,
        first_party=client.first_party,
        scope=frozenset((params.get("scope") or "").split()),
        started_at=tx.created_at if tx else None,
        consented=transactions.consented_in(tx, sso.sid if sso else None),
        mfa_max_age=current_app.config["MFA_MAX_AGE"],
    )


def consent_scope(client: Client, params: Any) -> str:
    """What the consent screen asks for: the requested scopes and those of
    claims requested one by one, as far as the app may have them."""
    try:
        claims = _requested_claims(params)
    except ValueError:
        claims = None
    wanted = (params.get("scope") or "").split() + sorted(oauth.claim_scopes(claims))
    return client.get_allowed_scope(" ".join(dict.fromkeys(wanted)))


def remembered_consent(sso: SsoSession | None, client: Client) -> str | None:
    """The scopes the signed-in person allowed this app (None: never asked, or a
    first-party app, which asks no one)."""
    if sso is None or client.first_party:
        return None
    return oauth.consented_scope(sso.user_id, client.client_id)


def has_consent(consented: str | None, client: Client, params: Any) -> bool:
    return consented is not None and set(consent_scope(client, params).split()) <= set(consented.split())


def _policy_session(sso: SsoSession | None) -> interaction.Session | None:
    if sso is None:
        return None
    return interaction.Session(sub=sso.user.sub, auth_time=sso.auth_time, acr=sso.acr, mfa_at=sso.mfa_at)


def _go_to_step(step: str, params: Any, client: Client, tx: LoginTransaction | None) -> Response:
    if tx is None:
        # Parking stores data for anyone who asks: limited per IP (a signed-in
        # SSO request that needs no page never gets here).
        if not spend(current_app.config["RATELIMIT_AUTHORIZE"], "authorize-park"):
            raise TooManyRequests(
                _("Too many sign-in requests came from your network. Wait a few minutes, then open the app again.")
            )
        # An RP's form POST arrives without the session cookie: the request is
        # then bound to the first browser that opens it, not written into a new session.
        bind = request.method == "GET" or sessions.sent_cookie()
        tx = transactions.park(params, client.client_id, bind=bind)
    if step == interaction.CONSENT:
        return redirect(url_for("authorize.consent", tx=tx.id))
    if step == interaction.MFA:
        return redirect(url_for("login.step_up", tx=tx.id))
    return redirect(url_for("login.password", tx=tx.id))


@dataclass
class Decision:
    """What a valid authorization request needs next (`step`: a page; None:
    the code can be issued now), with what the issuing needs."""

    grant: Any
    client: Client
    consented: str | None
    step: str | None


def decide(oauth_request: Any, tx: LoginTransaction | None, sso: SsoSession | None) -> Decision:
    """Validate the request (Authlib, then what it leaves to us) and say what
    is missing for the browser signed in as `sso`: OAuth2Error when invalid."""
    params = oauth_request.payload.data
    grant = authorization_server().get_consent_grant(oauth_request, end_user=sso.user if sso else None)
    _check_extras(params, grant)
    client = grant.client
    consented = remembered_consent(sso, client)
    try:
        policy = policy_request(params, client, tx, sso)
        step = interaction.next_step(policy, _policy_session(sso), has_consent(consented, client, params), now())
    except ValueError as exc:
        raise InvalidRequestError(str(exc), redirect_uri=grant.redirect_uri) from None
    except interaction.InteractionError as exc:
        raise INTERACTION_ERRORS[exc.error](description=exc.description, redirect_uri=grant.redirect_uri) from None
    return Decision(grant, client, consented, step)


def issue(oauth_request: Any, decision: Decision, sso: SsoSession) -> Response:
    """The code for a request that needs nothing more, in its response mode."""
    grant, params = decision.grant, oauth_request.payload.data
    grant.request.sso = sso
    grant.request.claims_requested = oauth.permitted_claims(
        _requested_claims(params), decision.client, decision.consented
    )
    # `iss` (RFC 9207) comes from the Issuer extension, on errors too.
    response = authorization_server().create_authorization_response(oauth_request, grant_user=sso.user, grant=grant)
    if response.status_code != 302:
        return response
    return respond(grant.redirect_uri, redirect_params(response, grant.redirect_uri), params.get("response_mode"))


def handle(oauth_request: Any, tx: LoginTransaction | None) -> Response:
    """Validate, decide what is missing, and either ask the user or issue the code."""
    params = oauth_request.payload.data
    sso = sessions.current()
    try:
        decision = decide(oauth_request, tx, sso)
    except OAuth2Error as error:
        return error_response(error, params)
    if decision.step:
        return _go_to_step(decision.step, params, decision.client, tx)
    response = issue(oauth_request, decision, sso)
    if tx is not None:
        transactions.complete(tx)
    return response


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    tx_id = request.args.get("tx")
    if tx_id is None:
        return handle(authorization_server().create_oauth2_request(request), None)
    try:
        tx = transactions.load(tx_id)
    except transactions.TransactionGone as gone:
        return transaction_gone(gone)
    return handle(ReadRequest("GET", request.url, tx.params), tx)


def transaction_gone(gone: transactions.TransactionGone) -> Response:
    """Back, refresh or an old tab: a clear page, not an error from deep inside."""
    client = query_client(gone.tx.client_id) if gone.tx else None
    messages = {
        "completed": _("This sign-in request was already answered."),
        "expired": _("This sign-in took too long and has expired."),
        "unknown": _("This sign-in link is not valid (anymore)."),
        "elsewhere": _("This sign-in was started in another browser, and can only go on there."),
    }
    hints = {"elsewhere": _("Open the app in this browser to sign in here.")}
    page = render_template(
        "authorize/gone.html",
        title=_("Start again from the app"),
        message=messages[gone.reason],
        hint=hints.get(gone.reason),
        client=client,
    )
    return Response(page, status={"unknown": 404, "elsewhere": 403}.get(gone.reason, 410))


@bp.post("/authorize/cancel")
def cancel() -> Response:
    """The person gave up signing in to the app (Cancel on the sign-in, code
    or set-up pages): the parked request is answered `access_denied`, with
    `state` and `iss`, at its registered redirect URI (RFC 6749 4.1.2.1), and
    the sign-in in progress in this browser ends."""
    try:
        tx = transactions.load(request.args.get("tx"))
    except transactions.TransactionGone as gone:
        return transaction_gone(gone)
    sessions.drop_pending()
    transactions.complete(tx)
    error = AccessDeniedError("The user cancelled the sign-in.", redirect_uri=tx.params["redirect_uri"])
    return error_response(error, tx.params)


# -- consent ----------------------------------------------------------------------


@bp.route("/authorize/consent", methods=["GET", "POST"])
def consent() -> Response:
    try:
        tx = transactions.load(request.args.get("tx"))
    except transactions.TransactionGone as gone:
        return transaction_gone(gone)
    sso = sessions.current()
    client = query_client(tx.client_id)
    if sso is None or client is None:
        return redirect(url_for("authorize.authorize", tx=tx.id))
    scope = consent_scope(client, tx.params)
    form = ConfirmForm()
    if form.validate_on_submit():
        if request.form.get("decision") != "allow":
            error = AccessDeniedError(
                "The user did not allow the request.", redirect_uri=tx.params["redirect_uri"]
            )
            transactions.complete(tx)
            return error_response(error, tx.params)
        remember_consent(sso.user_id, client.client_id, scope)
        transactions.consent_given(tx, sso.sid)
        return redirect(url_for("authorize.authorize", tx=tx.id))
    items = [str(SCOPE_TEXT[s]) for s in scope.split() if s in SCOPE_TEXT]
    return Response(
        render_template(
            "authorize/consent.html",
            title=_("Allow %(app)s?", app=client.name),
            client=client,
            items=items,
            form=form,
            user=sso.user,
        )
    )


def remember_consent(user_id: int, client_id: str, scope: str) -> None:
    """Remember the granted scopes per user and client (a union with earlier grants)."""
    item = db.session.scalar(db.select(Consent).filter_by(user_id=user_id, client_id=client_id))
    if item is None:
        item = Consent(user_id=user_id, client_id=client_id, scope="")
        db.session.add(item)
    item.scope = " ".join(sorted(set(item.scope.split()) | set(scope.split())))
    db.session.commit()


def init_app(app: Flask) -> None:
    csrf.exempt("oidc_provider.authorize.authorize")
    app.register_blueprint(bp)
