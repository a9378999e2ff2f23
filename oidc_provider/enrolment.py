"""Blueprint for setting up an MFA method, in two situations with one set of
pages:

- `signin`: the password was accepted but the account has no method yet
  (SPEC 3: no app, no portal page, no token until one is set up); the first
  confirmed method completes the sign-in through `login.enrolled`;
- `manage`: a signed-in user adds or replaces a method from Manage MFA, after a
  fresh re-authentication (password + MFA within REAUTH_MAX_AGE).

A `next` (local path) travels along every page of a setup that began on the
welcome page, so a person adding a second method mid sign-in gets back to the
app they were going to.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from . import audit, messages, mfa, outbox, passkeys, sessions, transactions
from .clients import Client, query_client
from .forms import AddPasskeyForm, CodeForm, EnrolEmailForm, EnrolSmsForm
from .mfa import PhoneError
from .models import LoginTransaction, MfaMethod, User
from .security import limiter, row_id, safe_next

bp = Blueprint("enrol", __name__, url_prefix="/mfa/setup")


class NotAllowed(Exception):
    """No one here may set up a method right now; `response` says where to go."""

    def __init__(self, response: Response):
        self.response = response


def enroller() -> tuple[User, str]:
    """(user, "signin" | "manage"), or NotAllowed with where to go instead."""
    pending = sessions.pending(sessions.ENROL)
    if pending is not None and not pending.user.has_second_factor:
        return pending.user, "signin"
    sso = sessions.current()
    if sso is None:
        raise NotAllowed(redirect(url_for("login.password")))
    if not sessions.is_fresh(sso):
        raise NotAllowed(redirect(url_for("login.password", reauth=1, next=request.full_path)))
    return sso.user, "manage"


def going_on() -> str | None:
    """Where the person was going when the setup began (welcome page), if anywhere."""
    return safe_next(request.args.get("next"))


@bp.context_processor
def _going_on() -> dict[str, object]:
    return {"going_on": going_on(), "shown": mfa.shown}


def signing_in_to() -> tuple[LoginTransaction | None, Client | None]:
    """(parked request, its app) of a first sign-in setting up its method, so
    the page says where it goes and Cancel returns there; (None, None) else."""
    pending = sessions.pending(sessions.ENROL)
    tx = transactions.find(pending.tx_id) if pending is not None else None
    return tx, query_client(tx.client_id) if tx is not None else None


def _replaces(user: User, kind: str) -> MfaMethod | None:
    """The confirmed method of `kind` that `?replaces=` names, if it is one."""
    method_id = row_id(request.args.get("replaces"))
    method = mfa.find(user, method_id) if method_id is not None else None
    if method is None or method.confirmed_at is None or method.kind != kind:
        return None
    return method


def confirmed(user: User, method: MfaMethod, mode: str, replaced: list[tuple[str, str]]) -> Response:
    """A method was confirmed, taking the place of the methods masked as
    `replaced` (now gone; masked and in full): finish the sign-in, or record, email and show the
    change."""
    if mode == "signin":
        sessions.mark_enrolled(method.id)
        return redirect(url_for("login.enrolled"))
    details = {"kind": method.kind, "target": mfa.mask(method)}
    if replaced:
        change = messages.method_replaced(method, *replaced[0])
        details["replaced"] = [masked for masked, _ in replaced]
        messages.settle_mfa_change(user, change, "mfa_replaced", **details)
    else:
        messages.settle_mfa_change(user, messages.method_added(method), "mfa_added", **details)
    if going_on():
        return redirect(url_for("portal.mfa_welcome", next=going_on()))
    return redirect(url_for("portal.mfa_methods"))


@bp.errorhandler(NotAllowed)
def _not_allowed(exc: NotAllowed) -> Response:
    return exc.response


@bp.get("")
def choose() -> str:
    user, mode = enroller()
    has_totp = any(m.kind == "totp" for m in user.confirmed_methods)
    reset = audit.query(user_id=user.id, events=["mfa_reset"], limit=1) if mode == "signin" else []
    tx, client = signing_in_to() if mode == "signin" else (None, None)
    return render_template(
        "mfa/choose.html",
        mode=mode,
        has_totp=has_totp,
        reset_at=reset[0].at if reset else None,
        passkeys=mode == "manage" and passkeys.available(),
        tx=tx,
        client=client,
    )


@bp.route("/authenticator", methods=["GET", "POST"])
def authenticator() -> Response | str:
    user, mode = enroller()
    if request.method == "GET" and request.args.get("new"):  # Manage MFA's "Replace"
        mfa.replace_totp(user)
        return redirect(url_for("enrol.authenticator", next=going_on()))  # a refresh keeps this QR code
    method = next((m for m in user.mfa_methods if m.kind == "totp" and m.confirmed_at is None), None)
    if method is None:
        method = mfa.start_enrolment(user, "totp")
    return _confirm_page(
        user,
        mode,
        method,
        "mfa/authenticator.html",
        qr=mfa.qr_svg(mfa.provisioning_uri(method)),
        otpauth=mfa.provisioning_uri(method),
        secret=mfa.grouped_secret(method),
        replacing=any(m.kind == "totp" for m in user.confirmed_methods),
        focus_code=request.method == "POST",  # at first the QR code comes first, not the keyboard
    )


def _confirm_page(
    user: User, mode: str, method: MfaMethod, template: str, focus_code: bool = True, **context: object
) -> Response | str:
    form = CodeForm()
    if not focus_code:
        form.code.render_kw = {k: v for k, v in form.code.render_kw.items() if k != "autofocus"}
    message, status = None, 200
    if form.validate_on_submit():
        replaced = [(mfa.mask(m), mfa.shown(m)) for m in mfa.replaced_by(method)]  # gone once confirmed
        result = mfa.confirm_enrolment(method, form.code.data)
        if result.ok:
            return confirmed(user, method, mode, replaced)
        message, status = messages.code_refusal(result, method.kind), 401
        form.code.data = ""  # a refused code is typed anew, not corrected
    elif request.method == "POST":
        status = 422
    return render_template(
        template,
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
            method = mfa.start_enrolment(user, kind, target, replaces=_replaces(user, kind))
        except PhoneError as exc:
            error = str(exc)
        else:
            send_code(method)
            return redirect(url_for("enrol.confirm", method_id=method.id, next=going_on()))
    status = 200 if request.method == "GET" else 422
    return render_template(
        "mfa/target.html",
        form=form,
        kind=kind,
        mode=mode,
        error=error,
        replacing=_replaces(user, kind),
        mask=mfa.mask,
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
        return redirect(url_for("enrol.choose", next=going_on()))
    progress = messages.code_progress(method, sessions.code_message(method.id))
    return _confirm_page(
        user,
        mode,
        method,
        "mfa/confirm.html",
        valid_for=mfa.code_lifetime(),
        not_sent=messages.code_not_sent(method, full=True) if progress is outbox.Progress.NOT_SENT else None,
        replacing=method.replaces_id is not None,
        resend_action=url_for("enrol.resend", method_id=method.id, next=going_on()),
        resend_in=mfa.resend_wait(method, "enrol"),
    )


@bp.post("/<int:method_id>/resend")
def resend(method_id: int) -> Response:
    user, _ = enroller()
    method = mfa.find(user, method_id)
    if method is None or method.kind == "totp" or method.confirmed_at is not None:
        return redirect(url_for("enrol.choose", next=going_on()))
    send_code(method)
    return redirect(url_for("enrol.confirm", method_id=method.id, next=going_on()))


def send_code(method: MfaMethod) -> None:
    """Queue the enrolment code, remember its message for the confirm page, and say so."""
    result = mfa.send_code(method, "enrol")
    sessions.remember_code_message(method.id, result.message_id)
    flash(*messages.code_sent(method, result, full=True))


@bp.route("/passkey", methods=["GET", "POST"])
@limiter.limit("20 per hour", methods=["POST"])
def passkey() -> Response | str:
    """Add a passkey (Manage MFA, after a fresh re-authentication): name it,
    then the browser makes it; only its public key is kept."""
    user, mode = enroller()
    if mode != "manage" or not passkeys.available():
        return redirect(url_for("enrol.choose", next=going_on()))
    form = AddPasskeyForm()
    if request.method == "GET":
        form.name.data = sessions.device_label(request.user_agent.string)
    message, status = None, 200
    if form.validate_on_submit():
        try:
            added = passkeys.register(
                user, sessions.browser_binding(), form.credential.data or "", form.name.data
            )
        except passkeys.PasskeyError as refused:
            message, status = str(refused), 400
        else:
            return _passkey_added(user, added.name)
    elif request.method == "POST":
        status = 422
    options = passkeys.registration_options(user, sessions.browser_binding())
    return render_template(
        "mfa/passkey.html",
        title=_("Add a passkey"),
        form=form,
        options=passkeys.options_json(options),
        message=message,
    ), status


def _passkey_added(user: User, name: str) -> Response:
    messages.settle_mfa_change(user, messages.passkey_added(name), "mfa_added", kind="passkey", target=name)
    if going_on():
        return redirect(url_for("portal.mfa_welcome", next=going_on()))
    return redirect(url_for("portal.mfa_methods"))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
