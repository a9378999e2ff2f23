"""Blueprint for signed-in people: the portal home (the apps they can open),
My details, Manage MFA, trusted computers and sessions."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, flash, redirect, render_template, url_for

from . import audit, sessions
from .clients import all_clients
from .db import db

bp = Blueprint("portal", __name__)


@bp.get("/")
def home() -> Response | str:
    sso = sessions.current()
    if sso is None:
        return redirect(url_for("login.password"))
    apps = [c for c in all_clients().values() if c.home_url]
    return render_template("portal/home.html", title="Your apps", user=sso.user, apps=apps)


@bp.post("/logout")
def logout() -> Response:
    """Sign out here: end the SSO session and forget this computer (SPEC 6, 10)."""
    sso = sessions.end_current()
    if sso is not None:
        audit.record("logout", user=sso.user, email=sso.user.email, sid=sso.sid)
        db.session.commit()
    response = redirect(url_for("login.password"))
    sessions.forget_this_computer(response)
    flash("You are signed out.", "success")
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
