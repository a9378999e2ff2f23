"""Support's MFA reset (SPEC 9) from the command line: `mfa show` and
`mfa reset EMAIL --reason …`; what the person then meets: signed out
everywhere, an email, and the enrolment gate at the next sign-in."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from mailserver import REFUSED_DOMAIN, text_of
from rp import make_user, query
from test_manage_mfa import TARGETS, Devices, give_method, methods_of, trusted_count

from oidc_provider import audit, mfa
from oidc_provider.db import db
from oidc_provider.models import User

REASON = "Lost phone and laptop; identity checked by video call, ticket 4711"


@pytest.fixture
def app(mail_app):
    return mail_app


@pytest.fixture
def devices(app, smtp_server) -> Devices:
    return Devices(app, smtp_server)


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=["mfa", *args])


def path(response) -> str:
    return urlsplit(response.location).path


def test_show_lists_every_method_masked(app, rp, devices, clock, cli):
    give_method(app, devices, rp.user, "email", TARGETS["email"][0])
    with app.app_context():
        user = db.session.get(User, rp.user.id)
        mfa.start_enrolment(user, "sms", TARGETS["sms"][0])  # never confirmed
    rp.sign_in(rp.authorize())  # the authenticator is used now

    result = cli("show", rp.user.email.upper())

    assert result.exit_code == 0, result.output
    header, totp, email, sms, codes = result.output.splitlines()
    assert header.split() == ["method", "kind", "added", "(UTC)", "last", "used", "(UTC)", "state"]
    assert totp.split()[:3] == ["Authenticator", "app", "totp"] and totp.endswith("confirmed")
    assert totp.count("2026-11-26 12:00") == 2  # added, and used by this sign-in
    assert email.startswith("b***@example.org") and " email " in email and email.endswith("confirmed")
    assert sms.startswith("+31 6 ****5678") and "never" in sms and "pending" in sms
    assert codes == "recovery codes: none made"
    assert TARGETS["email"][0] not in result.output and TARGETS["sms"][0] not in result.output


def test_reset_removes_every_method_and_ends_all_access(app, rp, devices, cli):
    give_method(app, devices, rp.user, "email", TARGETS["email"][0])
    rp.sign_in(rp.authorize(), trust=True)
    tokens = rp.token(rp.code_from(rp.authorize())).json
    assert trusted_count(app, rp.user) == 1

    result = cli("reset", rp.user.email, "--reason", REASON)

    assert result.exit_code == 0, result.output
    assert f"{rp.user.email}: 2 sign-in method(s) removed, 1 session(s) ended" in result.output
    assert f"emailed {rp.user.email}" in result.output
    assert methods_of(app, rp.user) == []
    assert trusted_count(app, rp.user) == 0
    with app.app_context():
        [record] = audit.query(user_id=rp.user.id, events=["mfa_reset"])
        assert record.details == {
            "reason": REASON,
            "methods_removed": 2,
            "recovery_codes_removed": 0,
            "sessions_ended": 1,
        }
    # signed out: an app asking silently is told to sign in; its access token is dead
    assert query(rp.authorize(prompt="none").location)["error"] == "login_required"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert app.test_client().get("/userinfo", headers=bearer).status_code == 401
    assert "has no sign-in method: the next sign-in asks to set one up" in cli("show", rp.user.email).output


def test_the_user_is_emailed_and_enrols_again_at_the_next_sign_in(app, rp, devices, smtp_server, cli):
    rp.sign_in(rp.authorize(), trust=True)
    cli("reset", rp.user.email, "--reason", REASON)

    notice = smtp_server.last(rp.user.email)
    assert "sign-in methods were reset" in notice["Subject"]
    body = text_of(notice)
    assert "we will ask you to set up a sign-in method again" in " ".join(body.split())
    assert "https://op.example.test/login" in body and REASON not in body

    response = rp.authorize()
    response = rp.browser.post(response.location, data={"email": rp.user.email, "password": rp.user.password})
    assert path(response) == "/mfa/setup"  # the trusted-computer cookie no longer skips anything
    assert path(rp.browser.get("/")) == "/login"  # no session until a method is set up
    setup = rp.browser.get("/mfa/setup").get_data(as_text=True)
    assert "Set up two-step sign-in" in setup and "Support removed your sign-in methods on" in setup


def test_unknown_address_is_a_clear_error(cli):
    for args in (["reset", "nobody@example.com", "--reason", REASON], ["show", "nobody@example.com"]):
        result = cli(*args)
        assert result.exit_code == 1
        assert "no account has the email address nobody@example.com" in result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("reason", [None, "  "])
def test_a_reason_is_required(app, rp, cli, reason):
    result = cli("reset", rp.user.email, *(["--reason", reason] if reason is not None else []))
    assert result.exit_code == 2 and "--reason" in result.output
    assert methods_of(app, rp.user) == [("totp", None, True)]


def test_a_failed_email_is_reported_but_the_reset_stands(app, cli):
    person = make_user(app, email=f"willow{REFUSED_DOMAIN}")
    result = cli("reset", person.email, "--reason", REASON)
    assert result.exit_code == 1
    assert "1 sign-in method(s) removed" in result.output
    assert f"could not email {person.email}" in result.output
    assert methods_of(app, person) == []
    with app.app_context():
        [failed] = audit.query(user_id=person.id, events=["mail_failed"])
        assert failed.details == {
            "template": "mfa_reset",
            "error": f"{{'{person.email}': (550, b'5.1.1 No such mailbox')}}",
        }
