"""Blueprint for setting up an MFA method, in two situations with one set of
pages:

- `signin`: the password was accepted but the account has no method yet
  (SPEC 3: no app, no portal page, no token until one is set up); the first
  confirmed method completes the sign-in through `login.enrolled`;
- `manage`: a signed-in user adds or replaces a method from Manage MFA, after a
  fresh re-authentication (password + MFA within REAUTH_MAX_AGE).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, flash, redirect, render_template, request, url_for

from . import audit, messages, mfa, sessions
from .db import db
from .forms import CodeForm, EnrolEmailForm, EnrolSmsForm
from .mfa import PhoneError
from .models import MfaMethod, User
from .security import limiter

bp = Blueprint("enrol", __name__, url_prefix="/mfa/setup")
KIND_NAMES = {"totp": "authenticator app", "email": "email codes", "sms": "text message (SMS) codes"}


class NotAllowed(Exception):
    """No one here may set up a method right now; `response` says where to go."""

    def __init__(self, response: Response):
        self.response = response


def enroller() -> tuple[User, str]:
    """(user, "signin" | "manage"), or NotAllowed with where to go instead."""
    pending = sessions.pending()
    if pending is not None:
        user = db.session.get(User, pending["user_id"])
        if user is not None and user.is_active and not user.confirmed_methods:
            return user, "signin"
    sso = sessions.current()
    if sso is None:
        raise NotAllowed(redirect(url_for("login.password")))
    if not sessions.is_fresh(sso):
        raise NotAllowed(redirect(url_for("login.password", reauth=1, next=request.full_path)))
    return sso.user, "manage"


def _replaces(user: User) -> MfaMethod | None:
    method_id = request.args.get("replaces", "")
    method = mfa.find(user, int(method_id)) if method_id.isdigit() else None
    return method if method is not None and method.confirmed_at is not None else None


def confirmed(user: User, method: MfaMethod, mode: str) -> Response:
    """A method was confirmed: finish the sign-in, or record the change."""
    if mode == "signin":
        return redirect(url_for("login.enrolled"))
    audit.record("mfa_added", user=user, email=user.email, kind=method.kind, target=mfa.mask(method))
    sessions.revoke_trusted_computers(user.id)  # an MFA change ends every "trust this computer"
    db.session.commit()
    messages.mfa_changed(user, f"{KIND_NAMES[method.kind].capitalize()} ({mfa.mask(method)}) was set up")
    flash(f"Your {KIND_NAMES[method.kind]} is set up.", "success")
    return redirect(url_for("portal.mfa_methods"))


@bp.errorhandler(NotAllowed)
def _not_allowed(exc: NotAllowed) -> Response:
    return exc.response


@bp.get("")
def choose() -> str:
    user, mode = enroller()
    has_totp = any(m.kind == "totp" for m in user.confirmed_methods)
    return render_template("mfa/choose.html", title="Set up two-step sign-in", mode=mode, has_totp=has_totp)


@bp.route("/authenticator", methods=["GET", "POST"])
def authenticator() -> Response | str:
    user, mode = enroller()
    method = next((m for m in user.mfa_methods if m.kind == "totp" and m.confirmed_at is None), None)
    if method is None or request.args.get("new"):
        method = mfa.start_enrolment(user, "totp")  # a refresh keeps the QR code already scanned
    return _confirm_page(
        user,
        mode,
        method,
        "mfa/authenticator.html",
        qr=mfa.qr_svg(mfa.provisioning_uri(method)),
        secret=mfa.grouped_secret(method),
    )


def _confirm_page(
    user: User, mode: str, method: MfaMethod, template: str, **context: object
) -> Response | str:
    form = CodeForm()
    message, status = None, 200
    if form.validate_on_submit():
        result = mfa.confirm_enrolment(method, form.code.data)
        if result.ok:
            return confirmed(user, method, mode)
        message, status = messages.code_refusal(result), 401
    elif request.method == "POST":
        status = 422
    return render_template(
        template,
        title="Set up two-step sign-in",
        form=form,
        method=method,
        mode=mode,
        message=message,
        mask=mfa.mask,
        **context,
    ), status


def _target_form(kind: str, form: EnrolEmailForm | EnrolSmsForm, user: User) -> Response | str:
    mode = enroller()[1]
    error = None
    if form.validate_on_submit():
        target = form.email.data if kind == "email" else form.phone.data
        try:
            method = mfa.start_enrolment(user, kind, target, replaces=_replaces(user))
        except PhoneError as exc:
            error = str(exc)
        else:
            flash(*messages.code_sent(method, mfa.send_code(method, "enrol")))
            return redirect(url_for("enrol.confirm", method_id=method.id))
    status = 200 if request.method == "GET" else 422
    return render_template(
        "mfa/target.html",
        title="Set up two-step sign-in",
        form=form,
        kind=kind,
        mode=mode,
        error=error,
        replacing=_replaces(user),
    ), status


@bp.route("/email", methods=["GET", "POST"])
@limiter.limit("20 per hour", methods=["POST"])
def email() -> Response | str:
    user, _ = enroller()
    form = EnrolEmailForm()
    if request.method == "GET" and not form.email.data:
        form.email.data = user.email
    return _target_form("email", form, user)


@bp.route("/sms", methods=["GET", "POST"])
@limiter.limit("20 per hour", methods=["POST"])
def sms() -> Response | str:
    user, _ = enroller()
    return _target_form("sms", EnrolSmsForm(), user)


@bp.route("/<int:method_id>/confirm", methods=["GET", "POST"])
def confirm(method_id: int) -> Response | str:
    user, mode = enroller()
    method = mfa.find(user, method_id)
    if method is None or method.kind == "totp" or method.confirmed_at is not None:
        return redirect(url_for("enrol.choose"))
    return _confirm_page(user, mode, method, "mfa/confirm.html")


@bp.post("/<int:method_id>/resend")
def resend(method_id: int) -> Response:
    user, _ = enroller()
    method = mfa.find(user, method_id)
    if method is None or method.kind == "totp" or method.confirmed_at is not None:
        return redirect(url_for("enrol.choose"))
    flash(*messages.code_sent(method, mfa.send_code(method, "enrol")))
    return redirect(url_for("enrol.confirm", method_id=method.id))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
