"""Blueprint for signed-in people: the portal home (the apps they can open),
My details, Manage MFA, trusted computers, and signing out."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext

from . import (
    accounts,
    activity,
    audit,
    logout,
    messages,
    mfa,
    passkeys,
    passwords,
    recovery,
    sessions,
    signin,
)
from .clients import Client, all_clients, query_client
from .db import db, now, same
from .forms import ChangePasswordForm, ConfirmForm
from .mfa import LastMethodError
from .models import MfaMethod, Passkey, SsoSession, TrustedComputer, User
from .security import csrf, row_id, safe_next

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
        "portal/home.html",
        title=_("Your apps"),
        user=sso.user,
        apps=apps,
        methods=mfa.methods(sso.user),
        **_reminders(sso.user),
    )


def _reminders(user: User) -> dict[str, Any]:
    """What the reminders on the portal's pages go by: how many sign-in
    methods (passkeys too) and recovery codes the person has."""
    left = recovery.left(user)
    return {
        "total": len(mfa.methods(user)) + len(user.passkeys),
        "recovery_left": left,
        "recovery_reminder": left < recovery.REMIND_BELOW,
    }


@bp.get("/account")
@signed_in
def details(sso: SsoSession) -> str:
    user = sso.user
    trusted = db.session.scalars(
        db.select(TrustedComputer).filter_by(user_id=user.id).order_by(TrustedComputer.created_at.desc())
    ).all()
    recent = activity.page(user, 1, size=RECENT)
    active = db.session.scalars(
        db.select(SsoSession)
        .filter_by(user_id=user.id, ended_at=None)
        .order_by(SsoSession.last_seen_at.desc())
    ).all()
    active = [a for a in active if a.expires_at > now()]
    return render_template(
        "portal/details.html",
        title=_("My details"),
        user=user,
        methods=mfa.methods(user),
        shown=mfa.shown,
        trusted=trusted,
        recent=recent,
        form=ConfirmForm(),
        this_computer=sessions.trusted_computer(user),
        active=active,
        current_sid=sso.sid,
        device=sessions.device_label,
        **_reminders(user),
    )


RECENT = 5  # activity entries on My details; the rest on the activity pages


@bp.get("/account/activity")
@signed_in
def activity_list(sso: SsoSession) -> str:
    """Every sign-in, wrong try, lockout and change of the account, a page at a time."""
    number = row_id(request.args.get("page") or "1")
    if not number:
        abort(404)
    listed = activity.page(sso.user, number)
    if number > 1 and not listed.entries:
        abort(404)
    return render_template("portal/activity.html", title=_("Account activity"), user=sso.user, listed=listed)


@bp.route("/account/password", methods=["GET", "POST"])
@signed_in
def change_password(sso: SsoSession) -> Response | tuple[str, int]:
    """Change password: the current one first; other browsers are signed out."""
    form = ChangePasswordForm(email=sso.user.email)
    error, status = None, 200
    if form.validate_on_submit():
        error = signin.check_current_password(sso.user, form.current.data)
        if error is None:
            try:
                ended = accounts.change_password(sso.user, form.password.data, keep_sid=sso.sid)
            except accounts.PasswordRejected as rejected:
                form.password.errors.append(str(rejected))
            else:
                flash(_password_changed(ended), "success")
                return redirect(url_for("portal.details"), 303)
        status = 401 if error else 422
    elif request.method == "POST":
        status = 422
    return render_template(
        "portal/password.html",
        title=_("Change password"),
        form=form,
        error=error,
        hint=passwords.strength_hint(),
        password_min=passwords.MIN_LENGTH,
    ), status


def _password_changed(ended: int) -> str:
    """What a password change did, for the person who made it."""
    if not ended:
        return _("Your password was changed. Apps that stayed connected elsewhere must sign in again.")
    return ngettext(
        "Your password was changed. %(num)d other browser was signed out and apps that stayed "
        "connected must sign in again.",
        "Your password was changed. %(num)d other browsers were signed out and apps that stayed "
        "connected must sign in again.",
        ended,
    )


@bp.get("/account/mfa")
@signed_in
def mfa_methods(sso: SsoSession) -> str:
    user = sso.user
    return render_template(
        "portal/mfa.html",
        title=_("Manage MFA"),
        user=user,
        methods=mfa.methods(user),
        passkeys=user.passkeys,
        can_add_passkey=passkeys.available(),
        recovery_count=recovery.COUNT,
        **_reminders(user),
        shown=mfa.shown,
        describe=messages.describe,
        fresh=sessions.is_fresh(sso),
        form=ConfirmForm(),
        next=safe_next(request.args.get("next")),
    )


@bp.get("/account/mfa/<int:method_id>/remove")
@signed_in
@fresh
def confirm_removal(sso: SsoSession, method_id: int) -> Response | str:
    """Removing a method asks first, naming it; the last one cannot be removed."""
    method = mfa.find(sso.user, method_id)
    if method is None or method.confirmed_at is None:
        abort(404)
    return _ask_before_removal(sso.user, method=method)


@bp.get("/account/mfa/passkeys/<int:passkey_id>/remove")
@signed_in
@fresh
def confirm_passkey_removal(sso: SsoSession, passkey_id: int) -> Response | str:
    """Removing a passkey asks first too; never the last sign-in method."""
    passkey = passkeys.find(sso.user, passkey_id)
    if passkey is None:
        abort(404)
    return _ask_before_removal(sso.user, passkey=passkey)


def _ask_before_removal(
    user: User, method: MfaMethod | None = None, passkey: Passkey | None = None
) -> Response | str:
    """The confirmation page of a removal, or back to Manage MFA when it is
    the account's only sign-in method (methods and passkeys together)."""
    total = _reminders(user)["total"]
    if total < 2:
        flash(str(LastMethodError()), "error")
        return redirect(url_for("portal.mfa_methods"), 303)
    if passkey is not None:
        action = url_for("portal.remove_passkey", passkey_id=passkey.id)
    else:
        assert method is not None
        action = url_for("portal.remove_method", method_id=method.id)
    return render_template(
        "portal/remove_method.html",
        title=_("Remove a passkey?") if passkey is not None else _("Remove a sign-in method?"),
        user=user,
        method=method,
        passkey=passkey,
        others=total - 1,
        action=action,
        shown=mfa.shown,
        form=ConfirmForm(),
    )


@bp.post("/account/mfa/passkeys/<int:passkey_id>/remove")
@signed_in
@fresh
def remove_passkey(sso: SsoSession, passkey_id: int) -> Response:
    user = sso.user
    passkey = passkeys.find(user, passkey_id)
    if passkey is None or not ConfirmForm().validate_on_submit():
        abort(404)
    name = passkey.name
    change = messages.method_removed(messages.describe_passkey(name), messages.describe_passkey(name))
    try:
        passkeys.remove(user, passkey)
    except LastMethodError as exc:
        flash(str(exc), "error")
        return redirect(url_for("portal.mfa_methods"), 303)
    messages.settle_mfa_change(user, change, "mfa_removed", kind="passkey", target=name)
    return redirect(url_for("portal.mfa_methods"), 303)


@bp.post("/account/mfa/recovery-codes")
@signed_in
@fresh
def new_recovery_codes(sso: SsoSession) -> str:
    """A new set of recovery codes, shown in the answer to this request only;
    the earlier set stops working."""
    user = sso.user
    if not ConfirmForm().validate_on_submit():
        abort(400)
    codes = recovery.generate(user)
    audit.record("recovery_codes_generated", user=user, count=len(codes))
    db.session.commit()
    change = messages.recovery_codes_made()
    messages.mfa_changed(user, change.email)
    return render_template(
        "portal/recovery_codes.html", title=_("Your recovery codes"), codes=codes, message=change.page
    )


@bp.post("/account/mfa/<int:method_id>/remove")
@signed_in
@fresh
def remove_method(sso: SsoSession, method_id: int) -> Response:
    user = sso.user
    method = mfa.find(user, method_id)
    if method is None or method.confirmed_at is None or not ConfirmForm().validate_on_submit():
        abort(404)
    kind, label = method.kind, mfa.mask(method)
    change = messages.method_removed(messages.describe(method), messages.describe(method, full=True))
    try:
        mfa.remove(user, method_id)
    except LastMethodError as exc:
        flash(str(exc), "error")
        return redirect(url_for("portal.mfa_methods"), 303)
    messages.settle_mfa_change(user, change, "mfa_removed", kind=kind, target=label)
    return redirect(url_for("portal.mfa_methods"), 303)


@bp.get("/account/mfa/welcome")
@signed_in
def mfa_welcome(sso: SsoSession) -> str:
    """After the first method: advise a second one (authenticator + email)."""
    going_on = safe_next(request.args.get("next")) or url_for("portal.home")
    return render_template(
        "portal/mfa_welcome.html",
        title=_("You're protected"),
        user=sso.user,
        methods=mfa.methods(sso.user),
        shown=mfa.shown,
        next=going_on,
        codes=sessions.take_to_show(),  # the recovery codes of the first method, shown this once
    )


@bp.post("/account/trusted/<int:computer_id>/revoke")
@signed_in
def revoke_trusted(sso: SsoSession, computer_id: int) -> Response:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if sessions.revoke_trusted_computers(sso.user_id, computer_id):
        audit.record("trusted_computer_revoked", user=sso.user, email=sso.user.email)
        flash(_("That computer will ask for a code at the next sign-in."), "success")
    db.session.commit()
    return redirect(url_for("portal.details"), 303)


@bp.route("/logout", methods=["GET", "POST"])
def sign_out() -> Response | str:
    """Sign out: the portal's button and RP-Initiated Logout 1.0 (`end_session_endpoint`).

    A valid `id_token_hint` for this browser's own session proves which app
    asks: then the sign-out happens at once and returns to a registered
    `post_logout_redirect_uri` with `state`. Otherwise the person confirms
    first, and the page that follows links back to the app (no redirect).
    Either way only this browser's session ends, and this browser's "Trust
    this computer" is forgotten."""
    params = request.values
    own = sessions.held()
    claims = logout.verify_id_token_hint(params.get("id_token_hint"))
    hint = _hint_for_this_browser(claims, own)
    client = _logout_client(claims, params.get("client_id"))
    uri = params.get("post_logout_redirect_uri")
    back_to = uri if client and uri in client.post_logout_redirect_uris else None
    if hint is None and not _confirmed():
        return render_template(
            "portal/logout_confirm.html",
            title=_("Sign out?"),
            client=client,
            signed_in=own is not None,
            trusted=sessions.TRUST_COOKIE in request.cookies,
            form=ConfirmForm(),
            carried={
                k: params[k]
                for k in CARRIED
                if params.get(k) and (k != "post_logout_redirect_uri" or back_to)
            },
        )
    ended = _end_this_browser(own)
    if hint and back_to and not ended.frontchannel_urls:
        response = redirect(
            add_params_to_uri(back_to, [("state", params["state"])]) if params.get("state") else back_to
        )
    else:
        response = _logged_out_page(ended, back_to, params.get("state"), client)
    sessions.forget_this_computer(response)
    return response


# what an app sent, kept through the confirmation for the way back to it
CARRIED = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")


def _confirmed() -> bool:
    """A POST of our own confirmation form (the portal's Sign out button too)."""
    return (
        request.method == "POST" and request.form.get("confirm") == "1" and ConfirmForm().validate_on_submit()
    )


def _hint_for_this_browser(hint: dict | None, own: SsoSession | None) -> dict | None:
    """The hint, if it names this browser's own session (its `sid` and `sub`).
    Any other is suspect (RP-Initiated Logout 1.0 section 2): ID tokens reach
    every app, their logs and browser storage, and any page can send one, so a
    hint alone, expired or not, never signs out without the person's yes."""
    if hint is None or own is None:
        return None
    if not (same(str(hint.get("sid")), own.sid) and same(str(hint.get("sub")), own.user.sub)):
        return None
    return hint


def _logout_client(hint: dict | None, client_id: str | None) -> Client | None:
    if hint is not None:
        aud = hint.get("aud")
        aud = aud[0] if isinstance(aud, list) and aud else aud
        if client_id and client_id != aud:
            return None
        return query_client(aud if isinstance(aud, str) else None)
    return query_client(client_id)


def _end_this_browser(sso: SsoSession | None) -> logout.Ended:
    """End this browser's session (`sessions.held`: idle ones too, so their apps
    hear of it) and any sign-in in progress here."""
    ended = logout.end_session(sso) if sso is not None else logout.Ended(None, (), ())
    if sso is not None:  # their half-finished sign-ins elsewhere end too
        accounts.bump_security_stamp(sso.user)
        db.session.commit()
    sessions.end_current()
    return ended


def _logged_out_page(
    ended: logout.Ended, back_to: str | None, state: str | None, client: Client | None
) -> Response:
    if back_to and state:
        back_to = add_params_to_uri(back_to, [("state", state)])
    response = Response(
        render_template(
            "portal/logged_out.html",
            title=_("You are signed out"),
            frames=ended.frontchannel_urls,
            apps=[c.name for c in map(query_client, ended.client_ids) if c is not None],
            back_to=back_to,
            client=client,
        )
    )
    if ended.frontchannel_urls:
        origins = " ".join(
            sorted({"{0.scheme}://{0.netloc}".format(urlsplit(u)) for u in ended.frontchannel_urls})
        )
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; frame-src {origins}; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    return response


@bp.post("/account/sessions/<int:session_id>/end")
@signed_in
def end_session(sso: SsoSession, session_id: int) -> Response:
    """End one of the user's other sessions (another browser), with back-channel logout."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    other = db.session.get(SsoSession, session_id)
    if other is None or other.user_id != sso.user_id or other.ended_at is not None:
        abort(404)
    logout.end_session(other, reason="session_ended")
    flash(_("That session was signed out."), "success")
    return redirect(url_for("portal.details"), 303)


@bp.get("/logo")
def logo() -> Response:
    """The portal's logo: PORTAL_LOGO when set, else the built-in one (cached a day)."""
    path = current_app.config["PORTAL_LOGO"] or str(Path(current_app.static_folder) / "logo.svg")
    return send_file(path, max_age=86400)


def init_app(app: Flask) -> None:
    # RPs POST to the end_session_endpoint without our CSRF token; our own
    # confirmation form is still checked (ConfirmForm in _confirmed).
    csrf.exempt("oidc_provider.portal.sign_out")
    app.register_blueprint(bp)
