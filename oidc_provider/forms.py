"""Every form of the hosted pages. `autocomplete` is set on each field so
password managers and one-time-code autofill work."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, RadioField, StringField, TelField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, StopValidation

from . import accounts, addresses


def _address(form: Any, field: Any) -> None:
    """The provider's one address rule (`addresses.check`); the field keeps
    the stored form of the address."""
    try:
        field.data = addresses.check(field.data)
    except addresses.AddressRejected as rejected:
        raise StopValidation(str(rejected)) from None


EMAIL = [DataRequired("Enter your email address."), Length(max=320), _address]


def _name(form: Any, field: Any) -> None:
    """A person's name as accounts accept it (`accounts.check_name`)."""
    try:
        field.data = accounts.check_name(field.data)
    except accounts.NameRejected as rejected:
        raise StopValidation(str(rejected)) from None


CODE = [
    DataRequired("Enter the 6-digit code."),
    Regexp(r"^\s*\d{3}\s?\d{3}\s*$", message="The code has 6 digits."),
]


def _ac(value: str, **extra: str) -> dict[str, dict[str, str]]:
    return {"render_kw": {"autocomplete": value, **extra}}


class LoginForm(FlaskForm):
    email = EmailField("Email address", EMAIL, **_ac("username", autofocus="autofocus"))
    password = PasswordField(
        "Password", [DataRequired("Enter your password."), Length(max=1024)], **_ac("current-password")
    )


class CodeForm(FlaskForm):
    """The second sign-in step, enrolment confirmation and re-verification."""

    method = HiddenField()
    code = StringField(
        "6-digit code",
        CODE,
        **_ac("one-time-code", inputmode="numeric", pattern=r"[0-9 ]*", maxlength="7", autofocus="autofocus"),
    )
    trust = BooleanField("Trust this computer (skip MFA for a week)")


class ChooseMethodForm(FlaskForm):
    method = RadioField("Where should we get your code?", [DataRequired("Choose a method.")], choices=[])


class SendCodeForm(FlaskForm):
    method = HiddenField()


class RegisterForm(FlaskForm):
    name = StringField(
        "Full name", [DataRequired("Enter your full name."), Length(max=200), _name], **_ac("name")
    )
    email = EmailField("Email address", EMAIL, **_ac("email"))
    password = PasswordField("Password", [DataRequired("Choose a password.")], **_ac("new-password"))
    confirm = PasswordField(
        "Repeat the password",
        [DataRequired("Repeat the password."), EqualTo("password", "The passwords do not match.")],
        **_ac("new-password"),
    )


class EmailForm(FlaskForm):
    """Forgot password and "send me a new activation link"."""

    email = EmailField("Email address", EMAIL, **_ac("email"))


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", [DataRequired("Choose a password.")], **_ac("new-password"))
    confirm = PasswordField(
        "Repeat the new password",
        [DataRequired("Repeat the password."), EqualTo("password", "The passwords do not match.")],
        **_ac("new-password"),
    )


class ChangePasswordForm(ResetPasswordForm):
    current = PasswordField(
        "Current password", [DataRequired("Enter your current password.")], **_ac("current-password")
    )


class ReauthForm(FlaskForm):
    password = PasswordField("Password", [DataRequired("Enter your password.")], **_ac("current-password"))


class EnrolEmailForm(FlaskForm):
    email = EmailField("Email address for codes", EMAIL, **_ac("email"))


class EnrolSmsForm(FlaskForm):
    phone = TelField(
        "Mobile number",
        [DataRequired("Enter your mobile number."), Length(max=30)],
        **_ac("tel", inputmode="tel", placeholder="+31 6 12345678"),
    )


class ConfirmForm(FlaskForm):
    """A button that changes something (consent, remove, revoke, sign out)."""


class PasskeyForm(FlaskForm):
    """A passkey's answer, filled in by static/passkeys.js (sign-in, passwordless)."""

    credential = HiddenField()
    trust = BooleanField("Trust this computer (skip MFA for a week)")


class AddPasskeyForm(FlaskForm):
    name = StringField(
        "Name this passkey",
        [DataRequired("Give the passkey a name you will recognise."), Length(max=64)],
        **_ac("off"),
    )
    credential = HiddenField()


class RecoveryCodeForm(FlaskForm):
    code = StringField(
        "Recovery code",
        [DataRequired("Enter one of your recovery codes."), Length(max=64)],
        **_ac("off", autocapitalize="none", spellcheck="false", autofocus="autofocus"),
    )
