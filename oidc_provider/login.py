"""Blueprint for the hosted sign-in: the password step, then the second step
(a one-time code, or enrolment of a first MFA method), then back to the app
that asked (`/authorize?tx=…`) or to the portal home.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Flask, Response, current_app, flash, redirect, render_template, request, url_for

from . import audit, devices, interaction, messages, mfa, outbox, sessions, signin, transactions
from .clients import query_client
from .db import db, now
from .forms import CodeForm, LoginForm
from .models import LoginTransaction, MfaMethod, PendingSignIn, User
from .security import client_ip, limiter, row_id, safe_next

bp = Blueprint("login", __name__)
EXPIRED = "That sign-in can no longer be finished. Enter your password again."
STATUS = {"invalid": 422, "wrong": 401, "replayed": 401, "locked": 429, "disabled": 403, "not_activated": 403}


def _failed(response: Response) -> bool:
    """Only failed attempts count against the per-address limit."""
    return response.status_code != 302


def _tx() -> LoginTransaction | None:
    return transactions.find(request.args.get("tx"))


def wants_mfa(tx: LoginTransaction | None) -> bool:
    """The app asked for MFA on this request (acr_values or its client setting)."""
    if tx is None:
        return False
    client = query_client(tx.client_id)
    return interaction.Request(
        acr_values=tuple((tx.params.get("acr_values") or "").split()),
        require_mfa=bool(client and client.require_mfa),
    ).wants_mfa


def continue_url(tx: LoginTransaction | None, next_url: str | None = None) -> str:
    """Where a finished sign-in goes: the app's request, a portal page, or the home."""
    if tx is not None:
        return url_for("authorize.authorize", tx=tx.id)
    return safe_next(next_url) or url_for("portal.home")


def finish(
    user: User,
    amr: list[str],
    acr: str,
    *,
    mfa: bool,
    method: MfaMethod | None = None,
    trust: bool = False,
    tx: LoginTransaction | None = None,
    then: str | None = None,
) -> Response:
    """Start the SSO session and go on; the only way a sign-in completes. It
    uses up the browser's pending sign-in: only one request finishes it.
    `method`: the MFA method whose code was accepted, if any."""
    pending = sessions.pending()
    if pending is None or pending.user_id != user.id or not sessions.consume_pending(pending):
        return redirect(url_for("login.password"))
    next_url = pending.next_url
    signin.record_success(user)
    sso = sessions.start(user, amr, acr, now() if mfa else None)
    audit.record(
        "signin_ok",
        user=user,
        email=user.email,
        client_id=tx.client_id if tx else None,
        amr=amr,
        method=method.kind if method else None,
        sid=sso.sid,
        ip=client_ip(),
    )
    db.session.commit()
    response = redirect(then or continue_url(tx, next_url))
    devices.remember(response, user)
    if trust:
        sessions.trust_this_computer(response, user)
    return response


def after_password(user: User, tx: LoginTransaction | None, next_url: str | None, reauth: bool) -> Response:
    """Password accepted: enrol a first method, skip MFA on a trusted computer,
    or ask for a code."""
    purpose = sessions.ENROL if not user.confirmed_methods else sessions.REAUTH if reauth else sessions.SIGNIN
    sessions.begin_pending(user, purpose, tx.id if tx else None, safe_next(next_url))
    if not user.confirmed_methods:
        return redirect(url_for("enrol.choose"))
    trusted = sessions.trusted_computer(user)
    if trusted is not None and not wants_mfa(tx) and not reauth:
        sessions.touch(trusted)
        return finish(user, ["pwd"], interaction.ACR_PASSWORD, mfa=False, tx=tx)
    return redirect(url_for("login.second_factor"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], methods=["POST"], deduct_when=_failed)
def password() -> Response | str:
    tx = _tx()
    form = LoginForm()
    reauth = request.args.get("reauth") == "1"
    if request.method == "GET":
        sso = sessions.current() if reauth else None
        form.email.data = (
            sso.user.email if sso else (tx.params.get("login_hint") if tx else None) or form.email.data
        )
    message, result = None, None
    if form.validate_on_submit():
        result = signin.check_password(form.email.data, form.password.data, tx.client_id if tx else None)
        if result.kind == "ok":
            return after_password(result.user, tx, request.args.get("next"), reauth)
        message = result.error
    client = query_client(tx.client_id) if tx else None
    status = 200 if request.method == "GET" else STATUS.get(result.kind if result else "invalid", 401)
    return render_template(
        "login/password.html",
        title="Sign in",
        form=form,
        message=message,
        client=client,
        not_activated=bool(result and result.kind == "not_activated"),
        tx=tx,
        reauth=reauth,
        cancel=safe_next(request.args.get("next")) or url_for("portal.home"),
        action=url_for(
            "login.password",
            tx=tx.id if tx else None,
            reauth=1 if reauth else None,
            next=safe_next(request.args.get("next")),
        ),
    ), status


@bp.route("/login/step-up")
def step_up() -> Response:
    """An app asked for MFA but this browser signed in without it (trusted computer)."""
    tx = _tx()
    sso = sessions.current()
    if sso is None or tx is None:
        return redirect(url_for("login.password", tx=tx.id if tx else None))
    sessions.begin_pending(sso.user, sessions.STEP_UP, tx.id)
    return redirect(url_for("login.second_factor"))


# -- the second step: a one-time code ----------------------------------------------

AMR = {"totp": ["pwd", "otp", "mfa"], "email": ["pwd", "otp", "mfa"], "sms": ["pwd", "otp", "sms", "mfa"]}


def _pending_user() -> tuple[User | None, PendingSignIn | None]:
    pending = sessions.pending()
    if pending is None:
        if sessions.drop_pending():  # it took too long, or the person signed out or changed something
            flash(EXPIRED, "info")
        return None, None
    return pending.user, pending


def _chosen(user: User, method_id: str | None) -> MfaMethod | None:
    """The confirmed method the page asks for, else the first one (never one
    still awaiting its enrolment code)."""
    methods = mfa.methods(user)
    if method_id and method_id.isdigit():
        return next((m for m in methods if m.id == row_id(method_id)), None)
    return methods[0] if methods else None


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], methods=["POST"], deduct_when=_failed)
def second_factor() -> Response | str:
    user, pending = _pending_user()
    if user is None:
        return redirect(url_for("login.password"))
    if not user.confirmed_methods:
        return redirect(url_for("enrol.choose"))
    tx = transactions.find(pending.tx_id)
    form = CodeForm()
    method = _chosen(user, form.method.data if request.method == "POST" else request.args.get("method"))
    if method is None:
        return redirect(url_for("login.second_factor"))
    message, status = None, 200
    if form.validate_on_submit():
        result = signin.check_code(user, method, form.code.data, tx.client_id if tx else None)
        if result.error is None:
            trust = bool(form.trust.data) and pending.purpose == sessions.SIGNIN
            return finish(
                user, AMR[method.kind], interaction.ACR_MFA, mfa=True, method=method, trust=trust, tx=tx
            )
        message, status = result.error, STATUS[result.kind]
    elif request.method == "POST":
        status = 422
    standing = signin.standing(user)  # said before any code is typed: locked (until when), or the last try
    if standing.locked:
        status = 429
    message = message or standing.message
    form.method.data = str(method.id)
    return render_template(
        "login/code.html",
        title="Enter your code",
        form=form,
        method=method,
        methods=mfa.methods(user),
        mask=mfa.mask,
        message=message,
        tx=tx,
        client=query_client(tx.client_id) if tx else None,
        step_up=pending.purpose == sessions.STEP_UP,
        reauth=pending.purpose == sessions.REAUTH,
        cancel=pending.next_url or url_for("portal.home"),
        code_sent=_code_sent(method),
        locked=standing.locked,
        not_sent=_not_sent(method),
    ), status


def _code_sent(method: MfaMethod) -> bool:
    """An emailed or texted code is on its way and still valid."""
    sent = method.code_sent_at
    return sent is not None and now() - sent < timedelta(seconds=current_app.config["OTP_DELIVERY_STEP"])


def _not_sent(method: MfaMethod) -> str | None:
    """Why the code this browser asked for is not coming (it failed), or None."""
    if method.kind == "totp" or not _code_sent(method):
        return None
    progress = messages.code_progress(method, sessions.code_message(method.id))
    return messages.code_not_sent(method) if progress is outbox.Progress.NOT_SENT else None


@bp.post("/login/code/send")
def send_code() -> Response:
    """Email or text a code for the chosen method (sent only when asked)."""
    user, _ = _pending_user()
    if user is None:
        return redirect(url_for("login.password"))
    method = _chosen(user, request.form.get("method"))
    if method is None or method.kind == "totp":
        return redirect(url_for("login.second_factor"))
    if not signin.standing(user).locked:  # a code could not be used before the lockout ends: none is sent
        result = mfa.send_code(method, "signin")
        sessions.remember_code_message(method.id, result.message_id)
        flash(*messages.code_sent(method, result))
    return redirect(url_for("login.second_factor", method=method.id))


@bp.get("/login/enrolled")
def enrolled() -> Response:
    """The first method is confirmed (enrolment gate): the sign-in completes,
    then a page advises a second method before going on. Only a sign-in that
    set up its method on the enrolment pages gets here; any other still owes
    its code."""
    user, pending = _pending_user()
    if user is None or not user.confirmed_methods:
        return redirect(url_for("login.password"))
    enrolled_here = pending.enrolled_method_id if pending.purpose == sessions.ENROL else None
    method = next((m for m in user.confirmed_methods if m.id == enrolled_here), None)
    if method is None:
        return redirect(url_for("login.second_factor"))
    tx = transactions.find(pending.tx_id)
    audit.record("mfa_added", user=user, email=user.email, kind=method.kind, target=mfa.mask(method))
    going_on = continue_url(tx, pending.next_url)
    return finish(
        user,
        AMR[method.kind],
        interaction.ACR_MFA,
        mfa=True,
        method=method,
        tx=tx,
        then=url_for("portal.mfa_welcome", next=going_on),
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
