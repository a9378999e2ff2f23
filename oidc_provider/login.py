"""Blueprint for the hosted sign-in: the password step, then the second step
(a one-time code, or enrolment of a first MFA method), then back to the app
that asked (`/authorize?tx=…`) or to the portal home.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Flask, Response, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from . import (
    alerts,
    audit,
    devices,
    interaction,
    messages,
    mfa,
    outbox,
    passkeys,
    recovery,
    sessions,
    signin,
    support,
    transactions,
)
from .clients import query_client
from .db import db, now
from .forms import CodeForm, LoginForm, PasskeyForm, RecoveryCodeForm
from .models import LoginTransaction, MfaMethod, PendingSignIn, User
from .security import client_ip, limiter, row_id, safe_next

bp = Blueprint("login", __name__)
EXPIRED = _l("That sign-in can no longer be finished. Enter your password again.")
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
    via: str | None = None,
) -> Response:
    """Start the SSO session and go on; the only way a sign-in completes. It
    uses up the browser's pending sign-in: only one request finishes it.
    `method`: the MFA method whose code was accepted, if any; `via`: what
    else did (passkey, recovery). A browser the account has not used before
    gets the person an email (alerts.py). One transaction: the sign-in is
    finished, with its session, audit line, known browser and alert, or not
    at all."""
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
        method=method.kind if method else via,
        sid=sso.sid,
        ip=client_ip(),
    )
    response = redirect(then or continue_url(tx, next_url))
    new_browser = alerts.is_new_browser(user, devices.known(user))
    device = devices.remember(response, user)
    if trust:
        sessions.trust_this_computer(response, user)
    if new_browser:
        alerts.send(user, device, sso.auth_time, client_ip())
    db.session.commit()
    return response


def after_password(user: User, tx: LoginTransaction | None, next_url: str | None, reauth: bool) -> Response:
    """Password accepted: enrol a first method, skip MFA on a trusted computer,
    or ask for a code."""
    purpose = sessions.ENROL if not user.has_second_factor else sessions.REAUTH if reauth else sessions.SIGNIN
    sessions.begin_pending(user, purpose, tx.id if tx else None, safe_next(next_url))
    if not user.has_second_factor:
        return redirect(url_for("enrol.choose"))
    trusted = sessions.trusted_computer(user)
    if trusted is not None and not wants_mfa(tx) and not reauth:
        sessions.touch(trusted)
        return finish(user, ["pwd"], interaction.ACR_PASSWORD, mfa=False, tx=tx)
    return redirect(second_step(user))


def second_step(user: User) -> str:
    """The page that asks for the second step: a passkey first when the
    person has one (and passkeys work here), else a code."""
    if user.passkeys and passkeys.available():
        return url_for("login.passkey")
    if not user.confirmed_methods:  # passkeys only, on an issuer where they cannot work
        return url_for("login.recovery_code")
    return url_for("login.second_factor")


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
    status = 200 if request.method == "GET" else STATUS.get(result.kind if result else "invalid", 401)
    return _password_page(
        form,
        tx,
        message,
        status,
        reauth=reauth,
        next_url=safe_next(request.args.get("next")),
        not_activated=bool(result and result.kind == "not_activated"),
    )


def _password_page(
    form: LoginForm,
    tx: LoginTransaction | None,
    message: str | None,
    status: int,
    *,
    reauth: bool = False,
    next_url: str | None = None,
    not_activated: bool = False,
) -> tuple[str, int]:
    options = passwordless_options(tx)
    if options:  # the browser offers the site's passkeys in the address field's autofill
        form.email.render_kw = {**form.email.render_kw, "autocomplete": "username webauthn"}
    return render_template(
        "login/password.html",
        title=_("Sign in"),
        form=form,
        message=message,
        client=query_client(tx.client_id) if tx else None,
        not_activated=not_activated,
        tx=tx,
        reauth=reauth,
        cancel=next_url or url_for("portal.home"),
        action=url_for(
            "login.password", tx=tx.id if tx else None, reauth=1 if reauth else None, next=next_url
        ),
        passkey_options=options,
        passkey_action=url_for("login.passwordless", tx=tx.id if tx else None, next=next_url),
    ), status


@bp.route("/login/step-up")
def step_up() -> Response:
    """An app asked for MFA but this browser signed in without it (trusted computer)."""
    tx = _tx()
    sso = sessions.current()
    if sso is None or tx is None:
        return redirect(url_for("login.password", tx=tx.id if tx else None))
    sessions.begin_pending(sso.user, sessions.STEP_UP, tx.id)
    return redirect(second_step(sso.user))


# -- the second step: a one-time code ----------------------------------------------

# RFC 8176 for each code method; a recovery code is a second factor of its own kind
# (something the person has), not a one-time password of RFC 4226/6238. Passkeys: passkeys.amr.
AMR = {
    "totp": ["pwd", "otp", "mfa"],
    "email": ["pwd", "otp", "mfa"],
    "sms": ["pwd", "otp", "sms", "mfa"],
    "recovery": ["pwd", "mfa"],
}


def _pending_user() -> tuple[User | None, PendingSignIn | None]:
    pending = sessions.pending()
    if pending is None:
        if sessions.drop_pending():  # it took too long, or the person signed out or changed something
            flash(str(EXPIRED), "info")
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
    if not user.has_second_factor:
        return redirect(url_for("enrol.choose"))
    if not user.confirmed_methods:  # passkeys only
        return redirect(second_step(user))
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
        form.code.data = ""  # a refused code is typed anew, not corrected
    elif request.method == "POST":
        status = 422
    standing = signin.standing(user)  # said before any code is typed: locked (until when), or the last try
    if standing.locked:
        status = 429
    message = message or standing.message
    form.method.data = str(method.id)
    if method.kind == "sms":  # a texted code fills the field on phones that offer it (WebOTP)
        form.code.render_kw = {**form.code.render_kw, "data-webotp": ""}
    return render_template(
        "login/code.html",
        title=_("Enter your code"),
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
        has_passkey=bool(user.passkeys) and passkeys.available(),
        account=user.email,
        reset_mailto=support.mfa_reset_mailto(user.email),
        resend_action=url_for("login.send_code"),
        resend_in=mfa.resend_wait(method, "signin"),
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


SETUP_SKIPPED = (
    "Two-step sign-in was not set up, so you are not signed in. The next sign-in asks you to set it up."
)


@bp.post("/login/cancel")
def cancel() -> Response:
    """Give up a sign-in that no app asked for (Cancel while setting up a first
    method): nothing is set up, and the next sign-in asks again. (An app's
    request is answered by `authorize.cancel`.)"""
    if sessions.drop_pending():
        flash(SETUP_SKIPPED, "info")
    return redirect(url_for("login.password"), 303)


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
    response = finish(
        user,
        AMR[method.kind],
        interaction.ACR_MFA,
        mfa=True,
        method=method,
        tx=tx,
        then=url_for("portal.mfa_welcome", next=going_on),
    )
    if _signed_in_as(user) and not recovery.has_set(user):
        sessions.keep_to_show(recovery.generate(user))  # shown once, on the welcome page
        audit.record("recovery_codes_generated", user=user, count=recovery.COUNT)
        db.session.commit()
    return response


def _signed_in_as(user: User) -> bool:
    """`finish` completed the sign-in of `user` in this browser."""
    sso = sessions.current()
    return sso is not None and sso.user_id == user.id


# -- passkeys ----------------------------------------------------------------------


@bp.route("/login/passkey", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], methods=["POST"], deduct_when=_failed)
def passkey() -> Response | str:
    """The second step with a passkey, offered first to a person who has one."""
    user, pending = _pending_user()
    if user is None:
        return redirect(url_for("login.password"))
    if not user.passkeys or not passkeys.available():
        return redirect(url_for("login.second_factor"))
    tx = transactions.find(pending.tx_id)
    form = PasskeyForm()
    message, status = None, 200
    if form.validate_on_submit():
        try:
            assertion = passkeys.authenticate(
                sessions.browser_binding(), form.credential.data or "", user=user, pending=pending
            )
        except passkeys.PasskeyError as refused:
            audit.record(
                "mfa_failed", user=user, outcome="failed", method="passkey", client_id=_client_id(tx)
            )
            db.session.commit()
            message, status = str(refused), 401
        else:
            trust = bool(form.trust.data) and pending.purpose == sessions.SIGNIN
            amr = passkeys.amr(assertion, with_password=True)
            return finish(user, amr, interaction.ACR_MFA, mfa=True, via="passkey", trust=trust, tx=tx)
    elif request.method == "POST":
        status = 422
    options = passkeys.authentication_options(sessions.browser_binding(), user=user, pending=pending)
    return render_template(
        "login/passkey.html",
        title=_("Use your passkey"),
        form=form,
        options=passkeys.options_json(options),
        message=message,
        tx=tx,
        client=query_client(tx.client_id) if tx else None,
        step_up=pending.purpose == sessions.STEP_UP,
        reauth=pending.purpose == sessions.REAUTH,
        codes=bool(user.confirmed_methods),
        cancel=pending.next_url or url_for("portal.home"),
        reset_mailto=support.mfa_reset_mailto(user.email),
    ), status


def _client_id(tx: LoginTransaction | None) -> str | None:
    return tx.client_id if tx else None


def passwordless_options(tx: LoginTransaction | None) -> str | None:
    """The passkey request the sign-in page offers ("Sign in with a passkey",
    and the browser's autofill), or None where passkeys cannot work."""
    if not passkeys.available():
        return None
    options = passkeys.authentication_options(sessions.browser_binding(), tx_id=tx.id if tx else None)
    return passkeys.options_json(options)


@bp.post("/login/passkey/any")
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], deduct_when=_failed)
def passwordless() -> Response | tuple[str, int]:
    """Sign in with a passkey alone: the passkey holds the account and the
    device verified the person, so it stands for the password and MFA."""
    tx = _tx()
    form = PasskeyForm()
    next_url = safe_next(request.args.get("next"))
    if form.validate_on_submit() and passkeys.available():
        try:
            assertion = passkeys.authenticate(
                sessions.browser_binding(), form.credential.data or "", tx_id=tx.id if tx else None
            )
        except passkeys.PasskeyError:
            pass
        else:
            user = assertion.user
            if user.is_active:
                sessions.begin_pending(user, sessions.SIGNIN, tx.id if tx else None, next_url)
                amr = passkeys.amr(assertion, with_password=False)
                return finish(user, amr, interaction.ACR_MFA, mfa=True, via="passkey", tx=tx)
    audit.record(
        "signin_failed", outcome="failed", reason="passkey", client_id=_client_id(tx), ip=client_ip()
    )
    db.session.commit()
    return _password_page(LoginForm(formdata=None), tx, passkeys.REFUSED, 401, next_url=next_url)


# -- recovery codes ----------------------------------------------------------------


@bp.route("/login/recovery", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], methods=["POST"], deduct_when=_failed)
def recovery_code() -> Response | str:
    """A recovery code where a one-time code is asked for. It signs in, tells
    the person by email how many are left, and leads to Manage MFA to set up
    a new method."""
    user, pending = _pending_user()
    if user is None:
        return redirect(url_for("login.password"))
    if not user.has_second_factor:
        return redirect(url_for("enrol.choose"))
    tx = transactions.find(pending.tx_id)
    form = RecoveryCodeForm()
    message, status = None, 200
    if form.validate_on_submit():
        result = signin.check_recovery_code(user, form.code.data, _client_id(tx))
        if result.error is None:
            return _recovered(user, pending, tx)
        message, status = result.error, STATUS[result.kind]
    elif request.method == "POST":
        status = 422
    standing = signin.standing(user)
    if standing.locked:
        status = 429
    return render_template(
        "login/recovery.html",
        title=_("Use a recovery code"),
        form=form,
        message=message or standing.message,
        locked=standing.locked,
        tx=tx,
        client=query_client(tx.client_id) if tx else None,
        cancel=pending.next_url or url_for("portal.home"),
        has_passkey=bool(user.passkeys) and passkeys.available(),
        codes=bool(user.confirmed_methods),
        reset_mailto=support.mfa_reset_mailto(user.email),
        reauth=pending.purpose == sessions.REAUTH,
    ), status


def _recovered(user: User, pending: PendingSignIn, tx: LoginTransaction | None) -> Response:
    """A recovery code signed in: audited, mailed, and on to Manage MFA (then
    where the sign-in was going)."""
    left = recovery.left(user)
    audit.record("recovery_code_used", user=user, left=left, client_id=_client_id(tx))
    going_on = continue_url(tx, pending.next_url)
    response = finish(
        user,
        AMR["recovery"],
        interaction.ACR_MFA,
        mfa=True,
        via="recovery",
        tx=tx,
        then=url_for("portal.mfa_methods", next=going_on),
    )
    if _signed_in_as(user):
        flash(messages.recovery_code_signed_in(left), "info")
        messages.recovery_code_used(user, left)
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
