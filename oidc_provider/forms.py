"""Every form of the hosted pages. `autocomplete` is set on each field so
password managers and one-time-code autofill work."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from babel.support import Translations
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, RadioField, StringField, TelField
from wtforms.i18n import messages_path
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, StopValidation
from wtforms.widgets import PasswordInput

from . import accounts, addresses, passwords


@lru_cache(maxsize=16)
def _wtforms_messages(locale: str) -> Translations:
    return Translations.load(messages_path(), [locale], domain="wtforms")


class Form(FlaskForm):
    """Every form's base: WTForms' own messages (e.g. "Not a valid choice") in
    the page's language, read from their catalogue once per language rather
    than once per request as Flask-WTF does."""

    class Meta:
        def get_translations(self, form: Any) -> Translations:
            return _wtforms_messages(str(get_locale()))


def _address(form: Any, field: Any) -> None:
    """The provider's one address rule (`addresses.check`); the field keeps
    the stored form of the address."""
    try:
        field.data = addresses.check(field.data)
    except addresses.AddressRejected as rejected:
        raise StopValidation(str(rejected)) from None


EMAIL = [DataRequired(_l("Enter your email address.")), Length(max=320), _address]


def _name(form: Any, field: Any) -> None:
    """A person's name as accounts accept it (`accounts.check_name`)."""
    try:
        field.data = accounts.check_name(field.data)
    except accounts.NameRejected as rejected:
        raise StopValidation(str(rejected)) from None


CODE = [DataRequired(_l("Enter the 6-digit code.")), Regexp(r"^\d{6}$", message=_l("The code has 6 digits."))]
# what people paste or type between the digits of a code: "123 456", "123-456", "123.456"
CODE_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015.\u00b7]")


def _code_digits(value: str | None) -> str | None:
    """A typed or pasted code without its separators."""
    return CODE_SEPARATORS.sub("", value) if isinstance(value, str) else value


def _ac(value: str, **extra: str) -> dict[str, dict[str, str]]:
    return {"render_kw": {"autocomplete": value, **extra}}


# an address is typed as it is: no capital at its start, no spelling fixes
ADDRESS = {"spellcheck": "false", "autocapitalize": "none"}


class KeptPasswordField(PasswordField):
    """A new password that is shown again after a refused form when it was
    not itself the problem (the page is never cached: Cache-Control no-store),
    so a mistake elsewhere does not mean typing it twice again."""

    widget = PasswordInput(hide_value=False)

    def post_validate(self, form: Any, validation_stopped: bool) -> None:
        if self.errors:
            self.data = ""


class NewPasswordForm(Form):
    """A form that chooses a password: every problem of the password is told
    at once, with a mismatch of the repeated one (`passwords.policy_problems`)."""

    def account_email(self) -> str | None:
        """The account the password is for (its address may not be in it)."""
        return None

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        password = self._fields["password"]
        if password.data and not password.errors:
            problems = passwords.policy_problems(password.data, self.account_email())
            if problems:
                password.errors = list(problems)
                password.data = ""
                valid = False
        if password.errors:  # a refused password is chosen and repeated again
            self._fields["confirm"].data = ""
        return valid


class LoginForm(Form):
    email = EmailField(_l("Email address"), EMAIL, **_ac("username", autofocus="autofocus", **ADDRESS))
    password = PasswordField(
        _l("Password"), [DataRequired(_l("Enter your password.")), Length(max=1024)], **_ac("current-password")
    )


class CodeForm(Form):
    """The second sign-in step, enrolment confirmation and re-verification."""

    method = HiddenField()
    code = StringField(
        _l("6-digit code"),
        CODE,
        filters=[_code_digits],
        **_ac("one-time-code", inputmode="numeric", autofocus="autofocus", spellcheck="false"),
    )
    trust = BooleanField(_l("Trust this computer (skip MFA for a week)"))


class ChooseMethodForm(Form):
    method = RadioField(_l("Where should we get your code?"), [DataRequired(_l("Choose a method."))], choices=[])


class SendCodeForm(Form):
    method = HiddenField()


class RegisterForm(NewPasswordForm):
    name = StringField(
        _l("Full name"), [DataRequired(_l("Enter your full name.")), Length(max=200), _name], **_ac("name")
    )
    email = EmailField(_l("Email address"), EMAIL, **_ac("email", **ADDRESS))
    password = KeptPasswordField(_l("Password"), [DataRequired(_l("Choose a password."))], **_ac("new-password"))
    confirm = KeptPasswordField(
        _l("Repeat the password"),
        [DataRequired(_l("Repeat the password.")), EqualTo("password", _l("The passwords do not match."))],
        **_ac("new-password"),
    )

    def account_email(self) -> str | None:
        return self.email.data if not self.email.errors else None


class EmailForm(Form):
    """Forgot password and "send me a new activation link"."""

    email = EmailField(_l("Email address"), EMAIL, **_ac("email", **ADDRESS))


class ResetPasswordForm(NewPasswordForm):
    """A new password for the account `email` (reset link, change password)."""

    password = KeptPasswordField(_l("New password"), [DataRequired(_l("Choose a password."))], **_ac("new-password"))
    confirm = KeptPasswordField(
        _l("Repeat the new password"),
        [DataRequired(_l("Repeat the password.")), EqualTo("password", _l("The passwords do not match."))],
        **_ac("new-password"),
    )

    def __init__(self, *args: Any, email: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._account_email = email

    def account_email(self) -> str | None:
        return self._account_email


class ChangePasswordForm(ResetPasswordForm):
    current = PasswordField(
        _l("Current password"), [DataRequired(_l("Enter your current password."))], **_ac("current-password")
    )


class ReauthForm(Form):
    password = PasswordField(_l("Password"), [DataRequired(_l("Enter your password."))], **_ac("current-password"))


class EnrolEmailForm(Form):
    email = EmailField(_l("Email address for codes"), EMAIL, **_ac("email", **ADDRESS))


class EnrolSmsForm(Form):
    phone = TelField(
        _l("Mobile number"),
        [DataRequired(_l("Enter your mobile number.")), Length(max=30)],
        **_ac("tel", inputmode="tel", placeholder="+31 6 12345678"),
    )


class ConfirmForm(Form):
    """A button that changes something (consent, remove, revoke, sign out)."""


class PasskeyForm(Form):
    """A passkey's answer, filled in by static/passkeys.js (sign-in, passwordless)."""

    credential = HiddenField()
    trust = BooleanField(_l("Trust this computer (skip MFA for a week)"))


class AddPasskeyForm(Form):
    name = StringField(
        _l("Name this passkey"),
        [DataRequired(_l("Give the passkey a name you will recognise.")), Length(max=64)],
        **_ac("off"),
    )
    credential = HiddenField()


class RecoveryCodeForm(Form):
    code = StringField(
        _l("Recovery code"),
        [DataRequired(_l("Enter one of your recovery codes.")), Length(max=64)],
        **_ac("off", autocapitalize="none", spellcheck="false", autofocus="autofocus"),
    )
