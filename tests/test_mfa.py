"""MFA methods (SPEC 3, 4, 8, 9): authenticator app, emailed and texted codes,
enrolment, the replay guard, limits, and managing the methods."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from conftest import deliver
from mailserver import html_of, text_of
from markupsafe import Markup
from sqlalchemy import text
from sqlalchemy.orm import Session

from oidc_provider import mfa
from oidc_provider.db import db, now
from oidc_provider.mfa import Outcome, SendOutcome
from oidc_provider.models import MfaMethod, OutboxMessage, User

EMAIL = "codes@example.org"
PHONE = "+31612345678"


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def mail_ctx(mail_app):
    """An app context whose mail goes to the `smtp_server` fixture."""
    with mail_app.app_context():
        yield mail_app


def new_user(email: str = "jane@example.com") -> User:
    user = User(sub=f"sub-{email}", email=email, name="Jane Doe", password_hash="x", activated_at=now())
    db.session.add(user)
    db.session.commit()
    return user


def uri_secret(method: MfaMethod) -> str:
    return parse_qs(urlsplit(mfa.provisioning_uri(method)).query)["secret"][0]


def app_code(secret: str, clock, seconds: float = 0) -> str:
    """What the user's authenticator app shows, `seconds` from the clock's now."""
    return pyotp.TOTP(secret).at(clock.now + timedelta(seconds=seconds))


def enrol_totp(user: User, clock) -> tuple[MfaMethod, str]:
    """A confirmed authenticator and its secret; the current step is used up."""
    method = mfa.start_enrolment(user, "totp")
    secret = uri_secret(method)
    assert mfa.confirm_enrolment(method, app_code(secret, clock)).ok
    return method, secret


def emailed_code(smtp_server, address: str = EMAIL) -> str:
    return re.search(r"\b(\d{6})\b", text_of(smtp_server.last(address))).group(1)


def enrol_email(user: User, smtp_server, clock, address: str = EMAIL) -> MfaMethod:
    method = mfa.start_enrolment(user, "email", address)
    assert mfa.send_code(method, "enrol").sent
    assert mfa.confirm_enrolment(method, emailed_code(smtp_server, address)).ok
    clock.advance(seconds=30)  # past the resend cooldown
    return method


def texted(app, number: str = PHONE) -> list[str]:
    """The SMS to `number` in the outbox, oldest first (delivery writes them there
    when no gateway is set; file names start with the send time), once the
    outbox worker has sent what is due."""
    deliver(app)
    files = sorted(Path(app.config["OUTBOX_DIR"], "sms").glob("*.txt"))
    return [sms for sms in (f.read_text() for f in files) if sms.startswith(f"To: {number}\n")]


def texted_code(app, number: str = PHONE) -> str:
    return re.search(r"\b(\d{6})\b", texted(app, number)[-1]).group(1)


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- authenticator enrolment ------------------------------------------------------------


def test_totp_secret_is_random_160_bits_and_encrypted_at_rest(ctx):
    method = mfa.start_enrolment(new_user(), "totp")
    secret = uri_secret(method)

    stored = db.session.execute(text("SELECT secret FROM mfa_method")).scalar_one()
    assert len(secret) == 32  # base32: 160 bits
    assert secret not in stored and secret.lower() not in stored
    assert mfa.grouped_secret(method).replace(" ", "") == secret  # decrypts back
    assert uri_secret(mfa.start_enrolment(new_user("joe@example.com"), "totp")) != secret


def test_provisioning_uri_names_portal_and_account(ctx):
    method = mfa.start_enrolment(new_user(), "totp")

    uri = urlsplit(mfa.provisioning_uri(method))
    query = {k: v[0] for k, v in parse_qs(uri.query).items()}
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/Login Portal:jane@example.com"
    assert query["issuer"] == "Login Portal"
    assert query["secret"] == mfa.grouped_secret(method).replace(" ", "")
    assert (query["digits"], query["period"], query["algorithm"]) == ("6", "30", "SHA1")
    assert pyotp.parse_uri(mfa.provisioning_uri(method)).interval == 30


def test_qr_code_is_inline_svg_without_external_references(ctx):
    uri = mfa.provisioning_uri(mfa.start_enrolment(new_user(), "totp"))

    svg = mfa.qr_svg(uri)
    assert isinstance(svg, Markup)
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert "<?xml" not in svg
    assert "viewBox=" in svg and 'role="img"' in svg
    assert re.search(r"<title>[^<]+</title>", svg)
    for external in ("http", "href", "<image", "url(", "<script"):
        assert external not in svg


def test_grouped_secret_is_in_groups_of_four(ctx):
    grouped = mfa.grouped_secret(mfa.start_enrolment(new_user(), "totp"))

    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{4}){7}", grouped)


def test_authenticator_confirmed_by_one_current_code(ctx, clock):
    user = new_user()
    method = mfa.start_enrolment(user, "totp")
    secret = uri_secret(method)

    assert mfa.confirm_enrolment(method, other_code(app_code(secret, clock))).outcome is Outcome.WRONG
    assert method.confirmed_at is None and mfa.methods(user) == []
    assert mfa.confirm_enrolment(method, app_code(secret, clock)).ok
    assert method.confirmed_at == now()
    assert mfa.methods(user) == [method]


def test_secret_is_not_shown_again_after_confirmation(ctx, clock):
    method, _ = enrol_totp(new_user(), clock)

    with pytest.raises(mfa.EnrolmentError):
        mfa.provisioning_uri(method)
    with pytest.raises(mfa.EnrolmentError):
        mfa.grouped_secret(method)
    with pytest.raises(mfa.EnrolmentError):
        mfa.confirm_enrolment(method, "123456")


def test_new_enrolment_replaces_the_unconfirmed_one(ctx):
    user = new_user()
    first = mfa.start_enrolment(user, "totp")
    second = mfa.start_enrolment(user, "totp")

    assert [m.id for m in user.mfa_methods] == [second.id]
    assert uri_secret(second) != first.secret


# --- authenticator codes ------------------------------------------------------------------


def test_authenticator_accepts_the_adjacent_step_either_side(ctx, clock):
    method, secret = enrol_totp(new_user(), clock)

    clock.advance(seconds=90)
    assert mfa.verify(method, app_code(secret, clock, -30)).ok  # the phone runs slow
    clock.advance(seconds=90)
    assert mfa.verify(method, app_code(secret, clock, +30)).ok  # the phone runs fast


def test_authenticator_refuses_codes_two_steps_away(ctx, clock):
    method, secret = enrol_totp(new_user(), clock)
    clock.advance(seconds=120)

    assert mfa.verify(method, app_code(secret, clock, -60)).outcome is Outcome.WRONG
    assert mfa.verify(method, app_code(secret, clock, +60)).outcome is Outcome.WRONG
    assert mfa.verify(method, app_code(secret, clock)).ok


def test_used_authenticator_code_is_refused_even_at_the_next_request(ctx, clock):
    user = new_user()
    method, secret = enrol_totp(user, clock)
    clock.advance(seconds=30)
    code = app_code(secret, clock)
    assert mfa.verify(method, code).ok

    method_id = method.id
    db.session.remove()  # the next request: state comes from the database
    clock.advance(seconds=5)
    method = db.session.get(MfaMethod, method_id)
    assert mfa.verify(method, code).outcome is Outcome.REPLAYED
    assert mfa.verify(method, app_code(secret, clock, -30)).outcome is Outcome.REPLAYED  # older step


def stale_copy(method: MfaMethod) -> MfaMethod:
    """The method as another instance read it a moment ago."""
    with Session(db.engine) as other:
        return other.get(MfaMethod, method.id)


def test_two_instances_racing_with_one_code_cannot_both_accept_it(ctx, clock):
    method, secret = enrol_totp(new_user(), clock)
    clock.advance(seconds=30)
    code = app_code(secret, clock)
    read_by_other_instance = stale_copy(method)

    assert mfa.verify(method, code).ok
    assert mfa.verify(read_by_other_instance, code).outcome is Outcome.REPLAYED


def test_parallel_guesses_cannot_exceed_the_tries(mail_ctx, smtp_server, clock):
    method = enrol_email(new_user(), smtp_server, clock)
    assert mfa.send_code(method).sent
    code = emailed_code(smtp_server)
    for _ in range(4):
        mfa.verify(method, other_code(code))
    read_by_other_instance = stale_copy(method)

    assert mfa.verify(method, other_code(code)).attempts_left == 0
    assert mfa.verify(read_by_other_instance, code).outcome is Outcome.LOCKED


def test_enrolment_code_cannot_sign_in_again(ctx, clock):
    user = new_user()
    method = mfa.start_enrolment(user, "totp")
    secret = uri_secret(method)
    assert mfa.confirm_enrolment(method, app_code(secret, clock)).ok

    assert mfa.verify(method, app_code(secret, clock)).outcome is Outcome.REPLAYED


def test_code_may_have_spaces_but_must_be_six_digits(ctx, clock):
    method, secret = enrol_totp(new_user(), clock)
    clock.advance(seconds=30)
    code = app_code(secret, clock)

    for typo in (code[:5], code + "0", "abcdef", "", "١٢٣٤٥٦"):
        assert mfa.verify(method, typo).outcome is Outcome.WRONG
    assert mfa.verify(method, f" {code[:3]} {code[3:]} ").ok
    assert method.last_used_at == now()


# --- emailed codes ------------------------------------------------------------------------


def test_email_address_is_verified_by_an_emailed_code(mail_ctx, smtp_server, clock):
    user = new_user()
    method = mfa.start_enrolment(user, "email", f" {EMAIL} ")
    assert method.target == EMAIL
    assert mfa.confirm_enrolment(method, "123456").outcome is Outcome.NOT_SENT

    sent = mfa.send_code(method, "enrol")
    assert sent.outcome is SendOutcome.SENT and sent.message_id is not None
    mail = smtp_server.last(EMAIL)
    code = emailed_code(smtp_server)
    assert mail["Subject"] == "Your Login Portal code"
    assert "valid for 10 minutes" in text_of(mail)
    assert "If this wasn't you" in text_of(mail) and "change your password" in text_of(mail)
    assert code in html_of(mail) and "10 minutes" in html_of(mail)
    assert mfa.confirm_enrolment(method, code).ok
    assert mfa.methods(user) == [method]


def test_emailed_code_is_valid_for_ten_minutes_and_not_after(mail_ctx, smtp_server, clock):
    method = enrol_email(new_user(), smtp_server, clock)

    assert mfa.send_code(method).sent
    clock.advance(seconds=599)
    assert mfa.verify(method, emailed_code(smtp_server)).ok

    assert mfa.send_code(method).sent
    clock.advance(seconds=600)
    assert mfa.verify(method, emailed_code(smtp_server)).outcome is Outcome.EXPIRED


def test_code_sent_at_the_end_of_a_step_stays_valid(mail_ctx, smtp_server, clock):
    method = enrol_email(new_user(), smtp_server, clock)
    clock.now = clock.now.replace(minute=9, second=55)  # steps of 10 minutes start at :00, :10…

    assert mfa.send_code(method).sent
    clock.advance(minutes=9)
    assert mfa.verify(method, emailed_code(smtp_server)).ok


def test_earlier_code_still_works_after_a_resend(mail_ctx, smtp_server, clock):
    method = enrol_email(new_user(), smtp_server, clock)
    clock.now = clock.now.replace(minute=9, second=50)
    assert mfa.send_code(method).sent
    first = emailed_code(smtp_server)

    clock.advance(seconds=30)  # the next 10-minute step: the resent code differs
    assert mfa.send_code(method).sent
    assert emailed_code(smtp_server) != first
    assert mfa.verify(method, first).ok


def test_emailed_code_works_once_and_the_next_sign_in_gets_a_new_one(mail_ctx, smtp_server, clock):
    method = enrol_email(new_user(), smtp_server, clock)
    assert mfa.send_code(method).sent
    first = emailed_code(smtp_server)
    assert mfa.verify(method, first).ok
    assert mfa.verify(method, first).outcome is Outcome.REPLAYED

    clock.advance(seconds=30)  # same 10-minute step
    assert mfa.send_code(method).sent
    second = emailed_code(smtp_server)
    assert second != first
    assert mfa.verify(method, first).outcome is Outcome.WRONG
    assert mfa.verify(method, second).ok


def test_five_wrong_codes_lock_the_code_until_a_new_one_is_sent(mail_ctx, smtp_server, clock):
    method = enrol_email(new_user(), smtp_server, clock)
    assert mfa.send_code(method).sent
    code = emailed_code(smtp_server)

    lefts = [mfa.verify(method, other_code(code)).attempts_left for _ in range(5)]
    assert lefts == [4, 3, 2, 1, 0]
    assert mfa.verify(method, code).outcome is Outcome.LOCKED

    clock.advance(seconds=30)
    assert mfa.send_code(method).sent
    new = emailed_code(smtp_server)
    assert new != code  # the dead code is not sent again
    assert mfa.verify(method, other_code(new)).attempts_left == 4  # a new code restores the tries
    assert mfa.verify(method, new).ok


def test_resend_waits_for_the_cooldown(mail_ctx, smtp_server, clock):
    method = enrol_email(new_user(), smtp_server, clock)
    assert mfa.send_code(method).sent

    assert mfa.send_code(method) == mfa.SendResult(SendOutcome.COOLDOWN, 30)
    clock.advance(seconds=29.5)
    assert mfa.send_code(method) == mfa.SendResult(SendOutcome.COOLDOWN, 1)
    clock.advance(seconds=0.5)
    assert mfa.send_code(method).sent
    assert len(smtp_server.to(EMAIL)) == 3  # enrolment + two


def test_codes_per_hour_are_limited(mail_ctx, smtp_server, clock):
    method = mfa.start_enrolment(new_user(), "email", EMAIL)
    for _ in range(5):
        assert mfa.send_code(method, "enrol").sent
        deliver(mail_ctx)  # as the worker does at once: a code that waited an hour would have expired
        clock.advance(seconds=60)

    assert mfa.send_code(method, "enrol") == mfa.SendResult(SendOutcome.HOURLY_LIMIT, 3600 - 300)
    clock.advance(seconds=3600 - 300)
    assert mfa.send_code(method, "enrol").sent
    assert len(smtp_server.to(EMAIL)) == 6


def test_restarting_enrolment_does_not_reset_the_hourly_limit(mail_ctx, smtp_server, clock):
    user = new_user()
    for _ in range(5):
        assert mfa.send_code(mfa.start_enrolment(user, "email", EMAIL), "enrol").sent
        clock.advance(seconds=60)

    again = mfa.start_enrolment(user, "email", "other@example.org")
    assert mfa.send_code(again, "enrol").outcome is SendOutcome.HOURLY_LIMIT


def test_failed_delivery_changes_nothing(ctx, clock):
    method = mfa.start_enrolment(new_user(), "email", EMAIL)
    method.target = f"{EMAIL}\nBcc: someone@example.org"  # no mail can be queued to that
    db.session.commit()

    assert mfa.send_code(method, "enrol").outcome is SendOutcome.FAILED
    assert db.session.query(OutboxMessage).count() == 0
    assert (method.code_sent_at, method.sends_in_window) == (None, 0)
    assert mfa.confirm_enrolment(method, "123456").outcome is Outcome.NOT_SENT


# --- texted codes -------------------------------------------------------------------------


def test_mobile_number_is_verified_by_a_texted_code(ctx, clock):
    user = new_user()
    method = mfa.start_enrolment(user, "sms", "+31 6 12345678")
    assert method.target == PHONE

    assert mfa.send_code(method, "enrol").sent
    [sms] = texted(ctx)
    code = texted_code(ctx)
    assert "Valid for 10 minutes" in sms and "Change your password" in sms
    assert sms.rstrip().endswith(f"@op.example.test #{code}")  # browsers' one-time-code autofill
    assert mfa.confirm_enrolment(method, code).ok
    assert mfa.methods(user) == [method]


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+31 6 12345678", None, "+31612345678"),
        ("06-12345678", "NL", "+31612345678"),
        ("+1 650 253 0000", None, "+16502530000"),  # US numbers may be either kind
    ],
)
def test_parse_phone_accepts_mobile_numbers(ctx, raw, region, e164):
    assert mfa.parse_phone(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("+31 20 123 4567", "landline"),
        ("call me maybe", "country code"),
        ("+31 6 123", "not a valid phone number"),
        ("+55 11 91234-5678", "Numbers from Brazil (+55) can't receive codes yet."),
    ],
)
def test_parse_phone_refuses_numbers_that_cannot_get_codes(ctx, raw, message):
    with pytest.raises(mfa.PhoneError, match=re.escape(message)):
        mfa.parse_phone(raw)


def test_unsupported_country_is_refused_at_enrolment(ctx):
    user = new_user()
    with pytest.raises(mfa.PhoneError, match="Brazil"):
        mfa.start_enrolment(user, "sms", "+55 11 91234-5678")
    assert user.mfa_methods == []


def test_supported_countries_are_a_setting(make_app):
    with make_app(SMS_ALLOWED_REGIONS="BR").app_context():
        assert mfa.parse_phone("+55 11 91234-5678") == "+5511912345678"
        with pytest.raises(mfa.PhoneError, match="Netherlands"):
            mfa.parse_phone("+31 6 12345678")


# --- the user's methods -------------------------------------------------------------------


def test_mask_hides_all_but_a_hint(ctx):
    totp = MfaMethod(kind="totp", secret="-")
    email = MfaMethod(kind="email", target="jane@example.com", secret="-")
    sms = MfaMethod(kind="sms", target=PHONE, secret="-")

    assert [mfa.mask(m) for m in (totp, email, sms)] == [
        "Authenticator app",
        "j***@example.com",
        "+31 6 ****5678",
    ]
    assert mfa.mask(MfaMethod(kind="sms", target="+16502530000", secret="-")) == "+1 6**-***-0000"


def test_methods_lists_the_authenticator_first(mail_ctx, smtp_server, clock):
    user = new_user()
    sms = mfa.start_enrolment(user, "sms", PHONE)
    assert mfa.send_code(sms, "enrol").sent
    assert mfa.confirm_enrolment(sms, texted_code(mail_ctx)).ok
    email = enrol_email(user, smtp_server, clock)
    totp, _ = enrol_totp(user, clock)
    mfa.start_enrolment(user, "email", "pending@example.org")

    assert mfa.methods(user) == [totp, email, sms]
    assert mfa.find(user, sms.id) is sms
    assert mfa.find(new_user("joe@example.com"), sms.id) is None


def test_last_method_cannot_be_removed(mail_ctx, smtp_server, clock):
    user = new_user()
    totp, _ = enrol_totp(user, clock)
    with pytest.raises(mfa.LastMethodError):
        mfa.remove(user, totp.id)

    email = enrol_email(user, smtp_server, clock)
    mfa.remove(user, totp.id)
    assert mfa.methods(user) == [email]
    with pytest.raises(mfa.LastMethodError):
        mfa.remove(user, email.id)
    with pytest.raises(LookupError):
        mfa.remove(user, 9999)


def test_unconfirmed_method_can_always_be_removed(ctx, clock):
    user = new_user()
    enrol_totp(user, clock)
    pending = mfa.start_enrolment(user, "totp")

    mfa.remove(user, pending.id)
    assert len(user.mfa_methods) == 1


def test_replaced_authenticator_works_until_the_new_one_is_confirmed(ctx, clock):
    user = new_user()
    old, old_secret = enrol_totp(user, clock)
    new = mfa.replace_totp(user)
    new_secret = uri_secret(new)

    clock.advance(seconds=30)
    assert mfa.verify(old, app_code(old_secret, clock)).ok
    assert mfa.methods(user) == [old]
    assert mfa.confirm_enrolment(new, app_code(new_secret, clock)).ok

    assert mfa.methods(user) == [new]
    assert db.session.get(MfaMethod, old.id) is None
    clock.advance(seconds=30)
    assert mfa.verify(new, app_code(old_secret, clock)).outcome is Outcome.WRONG
    assert mfa.verify(new, app_code(new_secret, clock)).ok


def test_changed_email_address_replaces_the_old_one_once_confirmed(mail_ctx, smtp_server, clock):
    user = new_user()
    old = enrol_email(user, smtp_server, clock)
    new = mfa.start_enrolment(user, "email", "new@example.org", replaces=old)
    assert mfa.methods(user) == [old]

    assert mfa.send_code(new, "enrol").sent
    assert mfa.confirm_enrolment(new, emailed_code(smtp_server, "new@example.org")).ok
    assert mfa.methods(user) == [new]
    assert new.replaces_id is None


def test_changed_number_replaces_the_old_one_once_confirmed(ctx, clock):
    user = new_user()
    old = mfa.start_enrolment(user, "sms", PHONE)
    assert mfa.send_code(old, "enrol").sent
    assert mfa.confirm_enrolment(old, texted_code(ctx)).ok
    new = mfa.start_enrolment(user, "sms", "+32 470 12 34 56", replaces=old)

    assert mfa.send_code(new, "enrol").sent
    assert mfa.confirm_enrolment(new, texted_code(ctx, "+32470123456")).ok
    assert [(m.kind, m.target) for m in mfa.methods(user)] == [("sms", "+32470123456")]


def test_support_reset_leaves_no_methods(mail_ctx, smtp_server, clock):
    user = new_user()
    enrol_totp(user, clock)
    enrol_email(user, smtp_server, clock)
    mfa.start_enrolment(user, "totp")

    assert mfa.reset_all(user) == 3
    assert mfa.methods(user) == []
    assert db.session.query(MfaMethod).count() == 0
