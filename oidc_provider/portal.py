"""Blueprint for signed-in people: the portal home (the apps they can open),
My details, Manage MFA, trusted computers, and signing out."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, Response, abort, flash, redirect, render_template, request, url_for

from . import audit, messages, mfa, sessions
from .clients import all_clients
from .db import db
from .forms import ConfirmForm
from .mfa import LastMethodError
from .models import SsoSession, TrustedComputer

bp = Blueprint("portal", __name__)


def signed_in(view: Callable[..., Any]) -> Callable[..., Any]:
    """The view gets the current SSO session; without one, the sign-in page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        sso = sessions.current()
        if sso is None:
            return redirect(url_for("login.password", next=request.full_path.rstrip("?")))
        return view(sso, *args, **kwargs)

    return wrapper


def fresh(view: Callable[..., Any]) -> Callable[..., Any]:
    """Changes to sign-in methods need password + MFA within REAUTH_MAX_AGE."""

    @wraps(view)
    def wrapper(sso: SsoSession, *args: Any, **kwargs: Any) -> Any:
        if not sessions.is_fresh(sso):
            return redirect(url_for("login.password", reauth=1, next=url_for("portal.mfa_methods")))
        return view(sso, *args, **kwargs)

    return wrapper


@bp.get("/")
@signed_in
def home(sso: SsoSession) -> str:
    apps = [c for c in all_clients().values() if c.home_url]
    return render_template(
        "portal/home.html", title="Your apps", user=sso.user, apps=apps, methods=mfa.methods(sso.user)
    )


@bp.get("/account")
@signed_in
def details(sso: SsoSession) -> str:
    user = sso.user
    trusted = db.session.scalars(
        db.select(TrustedComputer).filter_by(user_id=user.id).order_by(TrustedComputer.created_at.desc())
    ).all()
    signins = audit.query(user_id=user.id, events=["signin_ok", "signin_failed", "mfa_failed"], limit=10)
    return render_template(
        "portal/details.html",
        title="My details",
        user=user,
        methods=mfa.methods(user),
        mask=mfa.mask,
        trusted=trusted,
        signins=signins,
        form=ConfirmForm(),
        this_computer=sessions.trusted_computer(user),
    )


@bp.get("/account/mfa")
@signed_in
def mfa_methods(sso: SsoSession) -> str:
    user = sso.user
    return render_template(
        "portal/mfa.html",
        title="Manage MFA",
        user=user,
        methods=mfa.methods(user),
        mask=mfa.mask,
        fresh=sessions.is_fresh(sso),
        form=ConfirmForm(),
    )


@bp.post("/account/mfa/<int:method_id>/remove")
@signed_in
@fresh
def remove_method(sso: SsoSession, method_id: int) -> Response:
    user = sso.user
    method = mfa.find(user, method_id)
    if method is None or not ConfirmForm().validate_on_submit():
        abort(404)
    label = mfa.mask(method)
    try:
        mfa.remove(user, method_id)
    except LastMethodError as exc:
        flash(str(exc), "error")
        return redirect(url_for("portal.mfa_methods"), 303)
    audit.record("mfa_removed", user=user, email=user.email, target=label)
    sessions.revoke_trusted_computers(user.id)
    db.session.commit()
    messages.mfa_changed(user, f"The sign-in method {label} was removed")
    flash(f"{label} was removed.", "success")
    return redirect(url_for("portal.mfa_methods"), 303)


@bp.get("/account/mfa/welcome")
@signed_in
def mfa_welcome(sso: SsoSession) -> str:
    """After the first method: advise a second one (authenticator + email)."""
    going_on = request.args.get("next", "")
    if not going_on.startswith("/") or going_on.startswith("//"):
        going_on = url_for("portal.home")
    return render_template(
        "portal/mfa_welcome.html",
        title="You're protected",
        user=sso.user,
        methods=mfa.methods(sso.user),
        mask=mfa.mask,
        next=going_on,
    )


@bp.post("/account/trusted/<int:computer_id>/revoke")
@signed_in
def revoke_trusted(sso: SsoSession, computer_id: int) -> Response:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if sessions.revoke_trusted_computers(sso.user_id, computer_id):
        audit.record("trusted_computer_revoked", user=sso.user, email=sso.user.email)
        flash("That computer will ask for a code at the next sign-in.", "success")
    db.session.commit()
    return redirect(url_for("portal.details"), 303)


@bp.post("/logout")
def logout() -> Response:
    """Sign out here: end the SSO session and forget this computer (SPEC 6, 10)."""
    sso = sessions.end_current()
    if sso is not None:
        audit.record("logout", user=sso.user, email=sso.user.email, sid=sso.sid)
        db.session.commit()
    response = redirect(url_for("login.password"), 303)
    sessions.forget_this_computer(response)
    flash("You are signed out.", "success")
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
