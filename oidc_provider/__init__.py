"""Login Portal: an OpenID Connect provider with password + TOTP sign-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from . import (
    clients,
    config,
    db,
    fastpath,
    formats,
    health,
    keys,
    locales,
    logs,
    metrics,
    outage,
    outbox,
    security,
    support,
    worker,
)

ROOT = Path(__file__).resolve().parent.parent


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the provider. `overrides` replaces any setting (tests use it)."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        instance_path=str((overrides or {}).get("INSTANCE_PATH") or ROOT / "instance"),
    )
    app.config.from_mapping(config.load(app.instance_path, overrides))
    logs.init_app(app)  # first: every later hook's lines carry the request id
    metrics.init_app(app)
    db.init_app(app)
    clients.init_app(app)
    keys.init_app(app)
    fastpath.init_app(app)  # inside ProxyFix, which security.init_app installs
    security.init_app(app)
    outage.init_app(app)
    health.init_app(app)
    locales.init_app(app)
    formats.init_app(app)
    support.init_app(app)

    from . import account, authorize, cli, endpoints, enrolment, login, logout, models, oauth, portal, serve  # noqa: F401

    metrics.watch_outbox(outbox.backlog)
    oauth.init_app(app)
    worker.init_app(app)
    endpoints.init_app(app)
    account.init_app(app)
    authorize.init_app(app)
    login.init_app(app)
    enrolment.init_app(app)
    portal.init_app(app)
    cli.init_app(app)
    serve.init_app(app)
    return app
