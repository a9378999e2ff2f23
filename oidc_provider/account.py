"""Blueprint "account": register, activate, new activation link, forgot and
reset password. Thin views over `accounts`; every page answers the same
whether or not an address has an account.

The POSTs that send email share one per-IP limit (RATELIMIT_EMAIL), counted
only when the form was accepted; `accounts` adds the per-address limit.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import TooManyRequests
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response as BaseResponse

from . import accounts, alerts, formats, locales, outbox, passwords
from .forms import ConfirmForm, EmailForm, RegisterForm, ResetPasswordForm
from .security import limiter

bp = Blueprint("account", __name__)
SENT_TO = "account_email"  # the address just typed, shown on the "check your email" page
SENT_MESSAGE = "account_message"  # the outbox id of its mail, whose progress that page tells
KINDS = ("activation", "resend", "reset")

email_limit = limiter.shared_limit(
    lambda: current_app.config["RATELIMIT_EMAIL"],
    scope="account-email",
    methods=["POST"],
    deduct_when=lambda response: response.status_code < 400,
)
# guesses at emailed links: only a link that does not work (unknown, used, expired) counts
link_limit = limiter.shared_limit(
    lambda: current_app.config["RATELIMIT_LINKS"],
    scope="account-link",
    deduct_when=lambda response: response.status_code in (404, 410),
)
LINK_ENDPOINTS = ("account.activate", "account.reset_password", "account.not_me")


def init_app(app: Flask) -> None:
    """Register the blueprint."""
    app.register_blueprint(bp)


@bp.context_processor
def _links() -> dict[str, Any]:
    return {
        "login_url": login_url(),
        "password_hint": passwords.strength_hint(),
        "password_min": passwords.MIN_LENGTH,
        "duration": formats.duration,
    }


def login_url() -> str:
    """The sign-in page (blueprint "login"), or its path while that is not registered."""
    try:
        return url_for("login.password")
    except BuildError:
        return "/login"


def _sent(kind: str, email: str, message_id: int | None) -> BaseResponse:
    session[SENT_TO] = accounts.normalize_email(email)
    session[SENT_MESSAGE] = message_id
    return redirect(url_for("account.check_email", sent=kind), 303)


def _form_page(template: str, form: Any) -> tuple[str, int]:
    """The form (again): 422 after a refused submission, 200 the first time."""
    return render_template(template, f=form), 422 if form.is_submitted() else 200


# --- register and activate -----------------------------------------------------------


@bp.route("/register", methods=["GET", "POST"])
@email_limit
def register() -> BaseResponse | tuple[str, int]:
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            mailed = accounts.register_user(
                form.name.data, form.email.data, form.password.data, locale=locales.current()
            )
            return _sent("activation", form.email.data, mailed.message_id)
        except accounts.PasswordRejected as rejected:
            form.password.errors = list(rejected.problems)
    return _form_page("account/register.html", form)


@bp.get("/check-email")
def check_email() -> str:
    kind = request.args.get("sent")
    return render_template(
        "account/check_email.html",
        kind=kind if kind in KINDS else "activation",
        email=session.get(SENT_TO),
        progress=outbox.progress(session.get(SENT_MESSAGE), outbox.MAIL),
    )


@bp.get("/activate/<token>")
@link_limit
def activate(token: str) -> str | tuple[str, int]:
    try:
        user = accounts.activate(token)
    except accounts.LinkInvalid as invalid:
        return _link_invalid(invalid, accounts.ACTIVATION)
    return render_template("account/activated.html", user=user)


@bp.route("/activate/resend", methods=["GET", "POST"])
@email_limit
def resend_activation() -> BaseResponse | tuple[str, int]:
    return _email_form("account/resend.html", "resend")


def _email_form(template: str, kind: str) -> BaseResponse | tuple[str, int]:
    """A form that asks for an address to email a link to: the same work and
    the same answer whatever the address (the worker looks it up)."""
    form = EmailForm()
    if form.validate_on_submit():
        return _sent(kind, form.email.data, accounts.ask_for_link(kind, form.email.data))
    return _form_page(template, form)


def _link_invalid(invalid: accounts.LinkInvalid, purpose: str) -> tuple[str, int]:
    """The page for a link that does not work, with the way to a new one."""
    active = invalid.user is not None and invalid.user.is_active
    status = 404 if invalid.reason == "unknown" else 410
    form = EmailForm(formdata=None)  # never the account's address: anyone may hold an old link
    return render_template(
        "account/link_invalid.html", reason=invalid.reason, purpose=purpose, active=active, f=form
    ), status


# --- forgot and reset password -------------------------------------------------------


@bp.route("/forgot-password", methods=["GET", "POST"])
@email_limit
def forgot_password() -> BaseResponse | tuple[str, int]:
    return _email_form("account/forgot.html", "reset")


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
@link_limit
def reset_password(token: str) -> str | tuple[str, int]:
    form = ResetPasswordForm()
    try:
        if form.validate_on_submit():
            accounts.reset_password(token, form.password.data)
            return render_template("account/reset_done.html")
        accounts.check_link(token, accounts.RESET)
    except accounts.LinkInvalid as invalid:
        return _link_invalid(invalid, accounts.RESET)
    except accounts.PasswordRejected as rejected:
        form.password.errors = list(rejected.problems)
    return _form_page("account/reset.html", form)


# --- "This wasn't me" in a new-device alert ----------------------------------------------

@bp.route("/not-me/<token>", methods=["GET", "POST"])
@link_limit
def not_me(token: str) -> BaseResponse | str | tuple[str, int]:
    """Asks first (mail scanners open links); the confirmation ends all access
    and goes on to choosing a new password."""
    form = ConfirmForm()
    try:
        if form.validate_on_submit():
            reset = alerts.wasnt_me(token)
            flash(_("Your account was signed out everywhere. Choose a new password now."), "success")
            return redirect(url_for("account.reset_password", token=reset), 303)
        alerts.check(token)
    except accounts.LinkInvalid as invalid:
        return _link_invalid(invalid, accounts.NOT_ME)
    return render_template("account/not_me.html", title=_("Secure your account"), form=form, token=token)


@bp.errorhandler(TooManyRequests)
def _too_many(exc: TooManyRequests) -> tuple[Response | str, int]:
    window = exc.limit.limit.get_expiry() if isinstance(exc, RateLimitExceeded) else 3600
    links = request.endpoint in LINK_ENDPOINTS
    return render_template("account/too_many.html", wait=formats.duration(window), links=links), 429
