"""Blueprint for relying-party servers: discovery, JWKS, token, userinfo, revocation, introspection.

CSRF-exempt, JSON errors. Discovery and JWKS bodies are built once and served
with a Cache-Control header.
"""

from __future__ import annotations

import json
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import ForbiddenError
from flask import Blueprint, Flask, Response, current_app, jsonify

from . import interaction, keys, locales, oauth
from .db import db
from .security import csrf, limiter

bp = Blueprint("endpoints", __name__)
CACHE = "public, max-age=3600"
JWKS_CACHE = "public, max-age=300"  # new keys are published a day before they sign


def _client_refused(response: Response) -> bool:
    return (response.get_json(silent=True) or {}).get("error") == "invalid_client"


# guesses at client secrets: only a refused client authentication counts
client_auth_limit = limiter.shared_limit(
    lambda: current_app.config["RATELIMIT_CLIENT_AUTH"], scope="client-auth", deduct_when=_client_refused
)


def metadata(app: Flask) -> dict[str, Any]:
    """OpenID Provider Metadata (Discovery 1.0 section 3): only what is implemented."""
    issuer = app.config["OIDC_ISSUER"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "scopes_supported": oauth.SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(keys.ALGS),
        "token_endpoint_auth_methods_supported": oauth.AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "revocation_endpoint_auth_methods_supported": oauth.AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": oauth.AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": oauth.CLAIMS
        + ["iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "at_hash", "sid"],
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "acr_values_supported": list(interaction.ACR_VALUES),
        "amr_values_supported": list(interaction.AMR_VALUES),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "display_values_supported": ["page"],
        # pages, emails and SMS speak these; claim values are what the person
        # typed, in no language of ours: no claims_locales_supported
        "ui_locales_supported": list(locales.LOCALES),
        "authorization_response_iss_parameter_supported": True,
        "end_session_endpoint": f"{issuer}/logout",
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": True,
        "frontchannel_logout_session_supported": True,
    }


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.post("/token")
@client_auth_limit
def token() -> Response:
    response = oauth.authorization_server().create_token_response()
    if response.status_code == 200:
        db.session.commit()
    else:
        db.session.rollback()
    return _no_store(response)


def bearer_error(error: OAuth2Error) -> Response:
    """A refused bearer token (RFC 6750 3): the error in JSON and in a
    `WWW-Authenticate: Bearer` challenge; a request without a bearer token gets
    the bare challenge (3.1). Answered here, not raised: the app's error pages
    would drop the challenge header."""
    if isinstance(error, ForbiddenError):  # no token, or another scheme than Bearer
        return Response(status=401, headers={"WWW-Authenticate": "Bearer"})
    challenge = f'Bearer error="{error.error}", error_description="{error.get_error_description()}"'
    response = jsonify(error=error.error, error_description=error.get_error_description())
    response.status_code = error.status_code
    response.headers["WWW-Authenticate"] = challenge
    return response


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    try:
        token = oauth.protector().acquire_token(["openid"])
    except OAuth2Error as error:
        return _no_store(bearer_error(error))
    info = oauth.user_info(token.user, token.scope, token.claims, token.get_client())
    return _no_store(jsonify(info))


@bp.post("/revoke")
@client_auth_limit
def revoke() -> Response:
    return _no_store(oauth.authorization_server().create_endpoint_response("revocation"))


@bp.post("/introspect")
@client_auth_limit
def introspect() -> Response:
    return _no_store(oauth.authorization_server().create_endpoint_response("introspection"))


def discovery_body() -> bytes:
    """The discovery document, serialised once per process (clients and settings are read at start)."""
    body = current_app.extensions.get("discovery_body")
    if body is None:
        body = current_app.extensions["discovery_body"] = json.dumps(metadata(current_app), indent=1).encode()
    return body


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    return Response(discovery_body(), mimetype="application/json", headers={"Cache-Control": CACHE})


@bp.get("/jwks.json")
def jwks() -> Response:
    return Response(
        keys.ring().jwks_body(), mimetype="application/jwk-set+json", headers={"Cache-Control": JWKS_CACHE}
    )


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
