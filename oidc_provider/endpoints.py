"""Blueprint for relying-party servers: discovery, JWKS, health.

CSRF-exempt, JSON errors. Discovery and JWKS bodies are built once and served
with a Cache-Control header.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from sqlalchemy import text

from . import keys
from .db import db
from .security import csrf

bp = Blueprint("endpoints", __name__)
CACHE = "public, max-age=3600"


def metadata(app: Flask) -> dict[str, Any]:
    """OpenID Provider Metadata (Discovery 1.0 section 3): only what is implemented."""
    issuer = app.config["OIDC_ISSUER"]
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks.json",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(keys.ALGS),
    }


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    body = current_app.extensions.setdefault(
        "discovery_body", json.dumps(metadata(current_app), indent=1).encode()
    )
    return Response(body, mimetype="application/json", headers={"Cache-Control": CACHE})


@bp.get("/jwks.json")
def jwks() -> Response:
    return Response(
        keys.ring().jwks_body(),
        mimetype="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=300"},
    )


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        current_app.logger.exception("health check: database unreachable")
        return {"status": "error", "database": "unreachable"}, 503
    return {"status": "ok"}, 200


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
