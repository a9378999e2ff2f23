"""Register, activate, new activation link, forgot/reset password, disable:
as a user would, following the links in the mail that arrives."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import deliver
from mailserver import free_port, html_of, links, text_of

from oidc_provider import accounts, passwords, signin
from oidc_provider.db import db, now, token_hash
from oidc_provider.models import AccountToken, AuditEvent, MfaMethod, SsoSession, Token, TrustedComputer, User

ANN = "ann.example@example.com"
GOOD = "correct horse battery staple"
NEW = "a completely different sentence"


def register(client, address: str = ANN, password: str = GOOD, confirm: str | None = None, **kw):
    data = {"name": "Ann Example", "email": address, "password": password, "confirm": confirm or password}
    return client.post("/register", data=data, **kw)


def path(link: str) -> str:
    return urlsplit(link).path


def user(app, address: str = ANN) -> User | None:
    with app.app_context():
        found = db.session.scalar(db.select(User).filter_by(email=address))
        if found is not None:
            db.session.expunge(found)
        return found


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).filter_by(event=name)))


def activation_link(smtp_server, address: str = ANN) -> str:
    [link] = [u for u in links(smtp_server.last(address)) if "/activate/" in u]
    return link


@pytest.fixture
def client(mail_app):
    return mail_app.test_client()


@pytest.fixture
def active(mail_app, client, smtp_server):
    """Ann, registered and activated."""
    register(client)
    client.get(path(activation_link(smtp_server)))
    return user(mail_app)


# --- register -------------------------------------------------------------------------


def test_register_page_has_labelled_fields_autocomplete_and_the_strength_hint(client):
    page = client.get("/register").get_data(as_text=True)
    for field, autocomplete in [("name", "name"), ("email", "email"), ("password", "new-password")]:
        assert f'<label for="{field}">' in page
        assert re.search(rf'<input[^>]*autocomplete="{autocomplete}"[^>]*id="{field}"', page)
    assert 'aria-describedby="password-hint"' in page and passwords.strength_hint() in page
    assert 'href="/login"' in page or 'href="/login?' in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing loaded from the network


def test_register_activate_once(mail_app, client, smtp_server):
    response = register(client)
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Check your email (and the spam folder)" in page and ANN in page

    ann = user(mail_app)
    assert ann.name == "Ann Example" and ann.activated_at is None
    assert passwords.verify_password(ann.password_hash, GOOD) and GOOD not in ann.password_hash

    message = smtp_server.last(ANN)
    assert message["Subject"] == "Activate your Login Portal account"
    link = activation_link(smtp_server)
    assert link.startswith("https://op.example.test/activate/")
    assert link in html_of(message) and "48 hours" in text_of(message)
    token = path(link).rsplit("/", 1)[1]
    assert len(token) >= 22  # at least 128 bits, base64url
    with mail_app.app_context():
        [row] = db.session.scalars(db.select(AccountToken)).all()
        assert row.purpose == "activation" and row.token_hash == token_hash(token) != token

    first = client.get(path(link))
    assert first.status_code == 200 and "Your account is active" in first.get_data(as_text=True)
    assert user(mail_app).activated_at is not None
    assert [e.user_id for e in events(mail_app, "activated")] == [ann.id]

    again = client.get(path(link))
    assert again.status_code == 410
    assert "already been used" in again.get_data(as_text=True)
    assert "already active" in again.get_data(as_text=True)


def test_unactivated_account_cannot_sign_in_until_activated(mail_app, client, smtp_server):
    register(client)
    with mail_app.app_context():
        refused = signin.check_password(ANN, GOOD)
        assert refused.kind == "not_activated" and "spam" in refused.error
    refused_page = client.post("/login", data={"email": ANN, "password": GOOD})
    assert refused_page.status_code == 403 and "not activated" in refused_page.get_data(as_text=True)

    client.get(path(activation_link(smtp_server)))
    with mail_app.app_context():
        assert signin.check_password(ANN, GOOD).kind == "ok"
    signed_in = client.post("/login", data={"email": ANN, "password": GOOD})
    assert signed_in.status_code == 302 and "/login" not in signed_in.headers["Location"]  # on to MFA setup


def test_activation_link_works_for_48_hours(mail_app, client, smtp_server, clock):
    register(client)
    clock.advance(hours=47, minutes=59)
    assert client.get(path(activation_link(smtp_server))).status_code == 200


def test_expired_activation_link_offers_a_new_one_that_works(mail_app, client, smtp_server, clock):
    register(client)
    old = activation_link(smtp_server)
    clock.advance(hours=49)

    expired = client.get(path(old))
    page = expired.get_data(as_text=True)
    assert expired.status_code == 410 and "This link has expired" in page
    assert 'action="/activate/resend"' in page and "Send me a new link" in page
    assert ANN not in page  # UX 22: whoever holds an old link does not learn the address
    assert user(mail_app).activated_at is None

    sent = client.post("/activate/resend", data={"email": ANN})
    assert sent.status_code == 303
    assert "new activation link" in client.get(sent.headers["Location"]).get_data(as_text=True)
    new = activation_link(smtp_server)
    assert new != old
    assert client.get(path(new)).status_code == 200
    assert user(mail_app).activated_at is not None
    assert client.get(path(old)).status_code == 410
    assert len(events(mail_app, "activation_resent")) == 1


def test_unknown_or_garbled_link_gets_a_clear_page(client):
    response = client.get("/activate/not-a-real-token")
    assert response.status_code == 404
    assert "This link is not valid" in response.get_data(as_text=True)
    assert client.get("/reset-password/%00%ff").status_code == 404


def test_links_are_built_from_the_issuer_not_the_host_header(client, smtp_server):
    register(client, base_url="http://attacker.example")
    assert activation_link(smtp_server).startswith("https://op.example.test/")


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [
        ("short pass", None, "Use at least 12 characters (this one has 10)."),
        ("qwertyuiop123", None, "too common"),
        ("Password2024!", None, "too common"),
        ("123456789012", None, "repetition or sequence"),
        ("my name is ann.example!", None, "email address"),
        (GOOD, GOOD + "!", "The passwords do not match."),
    ],
)
def test_weak_or_mismatched_password_is_refused(mail_app, client, smtp_server, password, confirm, message):
    response = register(client, password=password, confirm=confirm)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page and 'aria-invalid="true"' in page
    assert user(mail_app) is None and smtp_server.messages == []


def test_bad_email_and_missing_fields_are_refused(client, smtp_server):
    assert register(client, address="not-an-address").status_code == 422
    response = client.post("/register", data={})
    assert response.status_code == 422 and "Enter your full name." in response.get_data(as_text=True)
    assert smtp_server.messages == []


def test_duplicate_email_gets_the_same_page_and_an_already_registered_email(
    mail_app, client, smtp_server, active
):
    first_page = client.get("/check-email?sent=activation").get_data(as_text=True)
    response = register(client, address="ANN.Example@Example.com", password=NEW)
    assert response.status_code == 303 and response.headers["Location"] == "/check-email?sent=activation"
    assert client.get(response.headers["Location"]).get_data(as_text=True) == first_page

    notice = smtp_server.last(ANN)
    assert notice["Subject"] == "You already have a Login Portal account"
    assert "you already have an account" in text_of(notice)
    assert not [u for u in links(notice) if "/activate/" in u]
    assert any(u.endswith("/forgot-password") for u in links(notice))
    with mail_app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == 1
    assert passwords.verify_password(user(mail_app).password_hash, GOOD)  # unchanged


ATTACKER = "the attackers own long passphrase"


def test_a_stranger_who_registers_an_address_first_never_holds_the_account(mail_app, smtp_server, clock):
    """F-04 (account pre-hijacking): the attacker registers victim@ with his
    password; later the victim registers with hers and opens the link she
    receives. She signs in with HER password; his is refused and he never
    reaches the MFA enrolment."""
    attacker, victim = mail_app.test_client(), mail_app.test_client()
    data = {"name": "Not Ann", "email": ANN, "password": ATTACKER, "confirm": ATTACKER}
    assert attacker.post("/register", data=data).status_code == 303
    his_link = activation_link(smtp_server)  # in her mailbox, never seen by him

    clock.advance(minutes=2)
    assert register(victim).status_code == 303  # her own name and password
    mail = smtp_server.last(ANN)
    assert mail["Subject"] == "Activate your Login Portal account"
    her_link = activation_link(smtp_server)
    assert her_link != his_link

    replaced = victim.get(path(his_link))
    assert replaced.status_code == 410 and "This link was replaced" in replaced.get_data(as_text=True)
    assert 'action="/forgot-password"' in replaced.get_data(as_text=True)
    opened = victim.get(path(her_link))
    assert opened.status_code == 200 and "Welcome, Ann Example" in opened.get_data(as_text=True)

    signed_in = victim.post("/login", data={"email": ANN, "password": GOOD})
    assert signed_in.status_code == 302 and path(signed_in.location) == "/mfa/setup"
    refused = attacker.post("/login", data={"email": ANN, "password": ATTACKER})
    assert refused.status_code == 401 and signin.WRONG in refused.get_data(as_text=True)
    assert path(attacker.get("/mfa/setup").location) == "/login"
    assert path(attacker.get("/account").location) == "/login"
    assert user(mail_app).name == "Ann Example"
    assert [e.outcome for e in events(mail_app, "registered")] == ["ok", "replaced"]


def test_an_activation_link_activates_the_password_of_its_own_registration(
    mail_app, client, smtp_server, clock
):
    """The password travels with the link, not with the account: whatever
    happens to the pending account between, her link gives her password."""
    register(client)
    her_link = activation_link(smtp_server)
    with mail_app.app_context():
        pending = db.session.scalar(db.select(User).filter_by(email=ANN))
        pending.password_hash = passwords.hash_password(ATTACKER)  # as a concurrent registration would
        db.session.commit()
    assert client.get(path(her_link)).status_code == 200
    assert passwords.verify_password(user(mail_app).password_hash, GOOD)
    assert not passwords.verify_password(user(mail_app).password_hash, ATTACKER)


def test_registering_again_while_pending_takes_the_new_password(mail_app, client, smtp_server, clock):
    register(client)
    clock.advance(minutes=2)
    register(client, password=NEW)
    assert "you already have an account" not in text_of(smtp_server.last(ANN))
    assert client.get(path(activation_link(smtp_server))).status_code == 200
    assert passwords.verify_password(user(mail_app).password_hash, NEW)
    assert len(smtp_server.to(ANN)) == 2


def test_registering_again_within_the_cooldown_changes_nothing(mail_app, client, smtp_server):
    register(client)
    register(client, password=NEW)
    assert len(smtp_server.to(ANN)) == 1
    assert passwords.verify_password(user(mail_app).password_hash, GOOD)
    assert client.get(path(activation_link(smtp_server))).status_code == 200
    assert passwords.verify_password(user(mail_app).password_hash, GOOD)


def test_failed_mail_keeps_the_account_and_the_resend_form_then_works(make_app, smtp_server, clock):
    """Reliability 5c: the page no longer says the mail went when it did not;
    the account stays, and a new link sent once the server is back works."""
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), DELIVERY_RETRIES=1)  # nothing listens
    client = app.test_client()
    response = register(client)
    assert response.status_code == 303
    assert "We're sending an email to" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert user(app) is not None and smtp_server.messages == []  # the worker tried: refused
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "We could not send it to" in page and 'href="/activate/resend"' in page
    assert [e.outcome for e in events(app, "mail_failed")] == ["failed"]

    app.config["MAIL_PORT"] = smtp_server.port  # the mail server is back
    clock.advance(seconds=61)
    resent = client.post("/activate/resend", data={"email": ANN})
    assert resent.status_code == 303
    assert client.get(path(activation_link(smtp_server))).status_code == 200
    assert "Check your email" in client.get(resent.headers["Location"]).get_data(as_text=True)
    assert user(app).activated_at is not None


def test_without_mail_server_the_link_is_in_the_outbox_and_the_console(app, caplog):
    client = app.test_client()
    register(client)
    deliver(app)  # the worker writes it
    [eml] = Path(app.config["OUTBOX_DIR"]).glob("*.eml")
    assert eml.stat().st_mode & 0o777 == 0o600 and eml.parent.stat().st_mode & 0o777 == 0o700
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    [link] = links(message)
    assert any(link in r.getMessage() for r in caplog.records)
    assert client.get(path(link)).status_code == 200


def test_register_without_csrf_token_is_refused(make_app):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert 'name="csrf_token"' in client.get("/register").get_data(as_text=True)
    response = register(client)
    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)
    assert user(app) is None


# --- rate limits ----------------------------------------------------------------------


def test_email_forms_are_limited_per_ip_with_a_clear_429_page(make_app, smtp_server):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, RATELIMIT_EMAIL="3 per hour")
    client = app.test_client()
    assert register(client, password="short").status_code == 422  # refused forms do not count
    assert register(client).status_code == 303
    assert client.post("/forgot-password", data={"email": "x@example.com"}).status_code == 303
    assert client.post("/activate/resend", data={"email": "y@example.com"}).status_code == 303

    limited = client.post("/forgot-password", data={"email": "z@example.com"})
    assert limited.status_code == 429
    page = limited.get_data(as_text=True)
    assert "Too many requests" in page and "wait 60 minutes at most" in page and "Traceback" not in page
    assert client.get("/forgot-password").status_code == 200  # reading the form is not limited
    other_ip = client.post(
        "/forgot-password", data={"email": "z@example.com"}, environ_base={"REMOTE_ADDR": "10.1.1.1"}
    )
    assert other_ip.status_code == 303


def test_opening_links_that_do_not_work_is_limited_per_ip(make_app):
    """Guessing links: hopeless at 256 bits, and limited all the same."""
    app = make_app(RATELIMIT_LINKS="3 per hour")
    client = app.test_client()
    for _ in range(3):
        assert client.get("/activate/not-a-real-token").status_code == 404
    limited = client.get("/reset-password/not-a-real-token")
    assert limited.status_code == 429
    page = limited.get_data(as_text=True)
    assert "links that do not work" in page and "emails" not in page
    other_ip = client.get("/activate/not-a-real-token", environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert other_ip.status_code == 404


def test_one_address_gets_one_link_a_minute_and_five_an_hour(mail_app, client, smtp_server, clock):
    register(client)
    for _ in range(3):
        client.post("/activate/resend", data={"email": ANN}, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert len(smtp_server.to(ANN)) == 1  # same answer, no mail within the minute
    for _ in range(6):
        clock.advance(seconds=61)
        accounts_resend(mail_app)
    assert len(smtp_server.to(ANN)) == 5  # the registration's and four more in the hour
    outcomes = [e.outcome for e in events(mail_app, "activation_resent")]
    assert outcomes == ["limited"] * 3 + ["ok"] * 4 + ["limited"] * 2
    clock.advance(hours=1)
    accounts_resend(mail_app)
    assert len(smtp_server.to(ANN)) == 6


def accounts_resend(app) -> accounts.Sent:
    with app.test_request_context():
        return accounts.resend_activation(ANN)


def test_already_registered_notices_are_limited_per_address(mail_app, client, smtp_server, active):
    for _ in range(3):
        register(client, environ_base={"REMOTE_ADDR": "10.0.0.8"})
    assert len([m for m in smtp_server.to(ANN) if "already" in m["Subject"]]) == 1


# --- forgot and reset password --------------------------------------------------------


def reset_link(smtp_server, address: str = ANN) -> str:
    [link] = [u for u in links(smtp_server.last(address)) if "/reset-password/" in u]
    return link


def sign_in_state(app, ann: User) -> None:
    """A live SSO session, a trusted computer, an MFA method and an offline token for Ann."""
    with app.app_context():
        at = now()
        db.session.add_all(
            [
                SsoSession(
                    sid="sid-1",
                    cookie_hash="c" * 64,
                    user_id=ann.id,
                    auth_time=at,
                    amr=["pwd", "otp"],
                    acr="mfa",
                    expires_at=at + timedelta(hours=1),
                ),
                TrustedComputer(
                    user_id=ann.id, token_hash="t" * 64, label="Firefox", expires_at=at + timedelta(days=7)
                ),
                MfaMethod(user_id=ann.id, kind="totp", secret="encrypted", confirmed_at=at),
                Token(
                    client_id="client2",
                    user_id=ann.id,
                    access_token_hash="a" * 64,
                    refresh_token_hash="r" * 64,
                    scope="openid offline_access",
                    expires_at=at + timedelta(hours=1),
                    family="f",
                    auth_time=at,
                    acr="mfa",
                    amr=["pwd", "otp"],
                    offline=True,
                ),
            ]
        )
        db.session.commit()


def test_forgot_password_resets_once_and_signs_out_everywhere(mail_app, client, smtp_server, active, clock):
    sign_in_state(mail_app, active)
    page = client.get("/forgot-password").get_data(as_text=True)
    assert 'autocomplete="email"' in page
    response = client.post("/forgot-password", data={"email": ANN})
    assert response.status_code == 303
    assert "set a new password" in client.get(response.headers["Location"]).get_data(as_text=True)
    link = reset_link(smtp_server)
    assert "60 minutes" in text_of(smtp_server.last(ANN))

    form = client.get(path(link))
    assert form.status_code == 200 and 'autocomplete="new-password"' in form.get_data(as_text=True)
    weak = client.post(path(link), data={"password": "password1234", "confirm": "password1234"})
    assert weak.status_code == 422 and "too common" in weak.get_data(as_text=True)

    clock.advance(minutes=5)
    done = client.post(path(link), data={"password": NEW, "confirm": NEW})
    assert done.status_code == 200 and "Your password has been changed" in done.get_data(as_text=True)
    ann = user(mail_app)
    assert passwords.verify_password(ann.password_hash, NEW) and ann.password_changed_at == now_of(clock)
    with mail_app.app_context():
        assert_signed_out_everywhere()
        assert len(db.session.scalars(db.select(MfaMethod)).all()) == 1  # MFA stays: the reset is no bypass
    assert [e.user_id for e in events(mail_app, "password_reset")] == [ann.id]
    assert smtp_server.last(ANN)["Subject"] == "Your Login Portal password was changed"

    assert client.post(path(link), data={"password": GOOD, "confirm": GOOD}).status_code == 410
    assert passwords.verify_password(user(mail_app).password_hash, NEW)


def assert_signed_out_everywhere() -> None:
    assert db.session.scalar(db.select(SsoSession)).ended_at is not None
    assert db.session.scalars(db.select(TrustedComputer)).all() == []
    assert db.session.scalar(db.select(Token)).revoked_at is not None


def now_of(clock):
    return clock.now.replace(tzinfo=None)


def test_reset_link_expires_after_an_hour(mail_app, client, smtp_server, active, clock):
    client.post("/forgot-password", data={"email": ANN})
    link = reset_link(smtp_server)
    clock.advance(minutes=61)
    expired = client.get(path(link))
    assert expired.status_code == 410 and 'action="/forgot-password"' in expired.get_data(as_text=True)


def test_forgot_password_answers_the_same_for_unknown_addresses(mail_app, client, smtp_server, active):
    known = client.post("/forgot-password", data={"email": ANN})
    unknown = client.post("/forgot-password", data={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 303
    assert known.headers["Location"] == unknown.headers["Location"]
    assert smtp_server.to("nobody@example.com") == []
    assert [e.outcome for e in events(mail_app, "password_reset_requested")] == ["ok", "unknown"]


def test_reset_activates_a_pending_account(mail_app, client, smtp_server):
    register(client)
    client.post("/forgot-password", data={"email": ANN})
    client.post(path(reset_link(smtp_server)), data={"password": NEW, "confirm": NEW})
    assert user(mail_app).activated_at is not None
    assert client.get(path(activation_link_from_first(smtp_server))).status_code == 410


def activation_link_from_first(smtp_server) -> str:
    return [u for u in links(smtp_server.to(ANN)[0]) if "/activate/" in u][0]


# --- support commands -----------------------------------------------------------------


def test_support_can_resend_activation_even_within_the_limit(mail_app, client, smtp_server):
    register(client)
    runner = mail_app.test_cli_runner()
    result = runner.invoke(args=["users", "resend-activation", ANN.upper()])
    assert result.exit_code == 0 and "activation link sent" in result.output
    assert len(smtp_server.to(ANN)) == 2
    assert client.get(path(activation_link(smtp_server))).status_code == 200
    again = runner.invoke(args=["users", "resend-activation", ANN])
    assert "already activated" in again.output
    unknown = runner.invoke(args=["users", "resend-activation", "nobody@example.com"])
    assert unknown.exit_code == 1 and "no account" in unknown.output


def test_disabled_account_cannot_sign_in_and_its_sessions_end(mail_app, smtp_server, active):
    sign_in_state(mail_app, active)
    runner = mail_app.test_cli_runner()
    result = runner.invoke(args=["users", "disable", ANN, "--reason", "left the company"])
    assert result.exit_code == 0, result.output
    ann = user(mail_app)
    assert ann.disabled_reason == "left the company" and ann.disabled_at is not None
    with mail_app.app_context():
        assert signin.check_password(ANN, GOOD).kind == "disabled"
        assert_signed_out_everywhere()
        assert accounts.request_reset(ANN).outcome is accounts.Sent.NO_ACCOUNT
    assert events(mail_app, "account_disabled")[0].details["reason"] == "left the company"

    assert runner.invoke(args=["users", "enable", ANN]).output.strip() == f"{ANN} is active"
    with mail_app.app_context():
        assert signin.check_password(ANN, GOOD).kind == "ok"
    assert len(events(mail_app, "account_enabled")) == 1


def test_users_list_shows_each_state_in_columns(mail_app, client, smtp_server, active):
    register(client, address="bob@example.com")
    register(client, address="cy@example.com")
    runner = mail_app.test_cli_runner()
    runner.invoke(args=["users", "disable", "cy@example.com", "--reason", "test"])
    lines = runner.invoke(args=["users", "list"]).output.splitlines()
    assert lines[0].split() == ["email", "name", "state", "created", "(UTC)"]
    assert "active" in lines[1] and "pending activation" in lines[2] and "disabled" in lines[3]
    assert len({line.index("Ann Example") for line in lines[1:]}) == 1  # aligned
    assert runner.invoke(args=["users", "disable", "nobody@example.com", "--reason", "x"]).exit_code == 1


# --- what registrants type never reaches someone else's mailbox ----------------------------

INJECTED = (
    "Security team. Your Login Portal account was flagged. Verify within 24 hours at "
    "https://login-portal-verify.example/id or it is deleted. Ignore the link below, it has expired. Regards"
)


def test_mail_to_an_address_not_yet_verified_greets_without_the_typed_name(mail_app, client, smtp_server):
    """F-11: the registration name (any text, URLs too) went out from the
    portal's sender to whatever address was typed."""
    data = {"name": INJECTED, "email": ANN, "password": GOOD, "confirm": GOOD}
    assert client.post("/register", data=data).status_code == 303
    activation = smtp_server.last(ANN)
    for body in (text_of(activation), html_of(activation)):
        assert "Hello," in body
        assert "login-portal-verify" not in body and "flagged" not in body

    client.get(path(activation_link(smtp_server)))  # the mailbox's owner activates: the address is verified
    client.post("/forgot-password", data={"email": ANN})
    assert f"Hello {INJECTED[:20]}" in text_of(smtp_server.last(ANN))  # names stay once verified


@pytest.mark.parametrize(
    "name", ["Ann\r\nExample", "Ann\u202eelpmaxE", "Ann\u2028Example", "Ann\x1bExample", "  "]
)
def test_names_with_control_characters_are_refused(mail_app, client, smtp_server, name):
    response = client.post("/register", data={"name": name, "email": ANN, "password": GOOD, "confirm": GOOD})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "control characters" in page or "Enter your full name." in page
    assert user(mail_app) is None and smtp_server.messages == []
    result = mail_app.test_cli_runner().invoke(
        args=["users", "create", ANN, "--name", name, "--password-stdin"], input=GOOD + "\n"
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert user(mail_app) is None
