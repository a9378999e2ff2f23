"""The login policy, called directly: what an authorization request still
needs (login → MFA → consent), and the errors under prompt=none."""

from datetime import datetime, timedelta

import pytest

from oidc_provider.interaction import (
    ACR_MFA,
    ACR_PASSWORD,
    CONSENT,
    LOGIN,
    MFA,
    ConsentRequired,
    InteractionError,
    LoginRequired,
    Request,
    Session,
    next_step,
    parse_max_age,
    parse_prompt,
)

AT = datetime(2026, 11, 26, 12, 0, 0)
SIGNED_IN = Session(sub="u-1", auth_time=AT - timedelta(minutes=10), acr=ACR_MFA)
PASSWORD_ONLY = Session(sub="u-1", auth_time=AT - timedelta(minutes=10), acr=ACR_PASSWORD)


def step(sso=SIGNED_IN, has_consent=False, **request):
    return next_step(Request(**request), sso, has_consent, AT)


def test_signed_in_first_party_request_needs_nothing():
    assert step() is None


def test_no_session_needs_a_login():
    assert step(sso=None) == LOGIN


def test_no_session_under_prompt_none_is_login_required():
    with pytest.raises(LoginRequired) as raised:
        step(sso=None, prompt=frozenset({"none"}))
    assert raised.value.error == "login_required"


def test_prompt_login_needs_a_new_login():
    assert step(prompt=frozenset({"login"})) == LOGIN


def test_prompt_login_is_met_by_a_login_after_the_request_started():
    started = SIGNED_IN.auth_time - timedelta(seconds=5)
    assert step(prompt=frozenset({"login"}), started_at=started) is None


def test_prompt_login_is_not_met_by_a_login_before_the_request_started():
    started = SIGNED_IN.auth_time + timedelta(seconds=5)
    assert step(prompt=frozenset({"login"}), started_at=started) == LOGIN


def test_max_age_elapsed_needs_a_new_login():
    assert step(max_age=60) == LOGIN


def test_max_age_not_elapsed_needs_nothing():
    assert step(max_age=10000) is None


def test_max_age_exactly_elapsed_needs_nothing():
    assert step(max_age=600) is None  # "greater than max_age" (OIDC Core 3.1.2.1)


def test_max_age_beyond_any_date_needs_nothing():
    assert step(max_age=10**30) is None


def test_max_age_0_is_prompt_login_even_in_the_same_second():
    just_now = Session(sub="u-1", auth_time=AT, acr=ACR_MFA)
    assert step(sso=just_now, max_age=0) == LOGIN


def test_max_age_is_met_by_a_login_for_this_request():
    assert step(max_age=1, started_at=SIGNED_IN.auth_time) is None


def test_max_age_elapsed_under_prompt_none_is_login_required():
    with pytest.raises(LoginRequired):
        step(max_age=60, prompt=frozenset({"none"}))


def test_id_token_hint_of_the_signed_in_user_needs_nothing():
    assert step(id_token_hint_sub="u-1", prompt=frozenset({"none"})) is None


def test_id_token_hint_of_another_user_needs_a_login():
    assert step(id_token_hint_sub="u-2") == LOGIN


def test_id_token_hint_of_another_user_under_prompt_none_is_login_required():
    with pytest.raises(LoginRequired):
        step(id_token_hint_sub="u-2", prompt=frozenset({"none"}))


@pytest.mark.parametrize(
    "acr", [ACR_MFA, "mfa", "http://schemas.openid.net/pape/policies/2007/06/multi-factor"]
)
def test_acr_values_asking_for_mfa_after_a_password_only_login_need_mfa(acr):
    assert step(sso=PASSWORD_ONLY, acr_values=(acr,)) == MFA


@pytest.mark.parametrize("wants", [{"acr_values": (ACR_MFA,)}, {"require_mfa": True}], ids=["acr", "client"])
def test_mfa_asked_for_is_met_by_a_code_entered_for_this_request(wants):
    started = AT - timedelta(minutes=1)
    coded = Session(sub="u-1", auth_time=AT, acr=ACR_MFA, mfa_at=AT - timedelta(seconds=30))
    assert step(sso=coded, started_at=started, **wants) is None


@pytest.mark.parametrize("wants", [{"acr_values": (ACR_MFA,)}, {"require_mfa": True}], ids=["acr", "client"])
def test_mfa_asked_for_is_not_met_by_a_code_earlier_in_the_session(wants):
    """I-04: "a code in this sign-in", not any MFA of the last 12 hours."""
    earlier = Session(
        sub="u-1", auth_time=AT - timedelta(minutes=10), acr=ACR_MFA, mfa_at=AT - timedelta(minutes=10)
    )
    assert step(sso=earlier, **wants) == MFA
    assert step(sso=earlier, started_at=AT - timedelta(seconds=5), **wants) == MFA
    with pytest.raises(InteractionError):
        step(sso=earlier, prompt=frozenset({"none"}), **wants)


def test_mfa_max_age_lets_an_earlier_code_count_for_that_long():
    earlier = Session(
        sub="u-1", auth_time=AT - timedelta(minutes=10), acr=ACR_MFA, mfa_at=AT - timedelta(minutes=10)
    )
    assert step(sso=earlier, require_mfa=True, mfa_max_age=600) is None
    assert step(sso=earlier, require_mfa=True, mfa_max_age=599) == MFA


def test_mfa_max_age_never_makes_a_password_only_sign_in_enough():
    trusted = Session(sub="u-1", auth_time=AT, acr=ACR_PASSWORD, mfa_at=AT - timedelta(minutes=1))
    assert step(sso=trusted, require_mfa=True, mfa_max_age=3600, started_at=AT - timedelta(minutes=5)) == MFA


def test_acr_values_for_password_only_need_nothing_more():
    assert step(sso=PASSWORD_ONLY, acr_values=(ACR_PASSWORD,)) is None


def test_client_that_requires_mfa_gets_mfa_after_a_trusted_computer_login():
    assert step(sso=PASSWORD_ONLY, require_mfa=True) == MFA


def test_trusted_computer_login_is_enough_for_other_clients():
    assert step(sso=PASSWORD_ONLY) is None


def test_mfa_needed_under_prompt_none_is_interaction_required():
    with pytest.raises(InteractionError) as raised:
        step(sso=PASSWORD_ONLY, require_mfa=True, prompt=frozenset({"none"}))
    assert raised.value.error == "interaction_required"


def test_third_party_client_without_consent_asks_for_it():
    assert step(first_party=False) == CONSENT


def test_third_party_client_with_remembered_consent_needs_nothing():
    assert step(first_party=False, has_consent=True) is None


def test_prompt_consent_asks_again():
    assert step(first_party=False, has_consent=True, prompt=frozenset({"consent"})) == CONSENT


def test_consent_given_during_this_request_is_enough():
    assert step(first_party=False, prompt=frozenset({"consent"}), consented=True) is None


def test_consent_needed_under_prompt_none_is_consent_required():
    with pytest.raises(ConsentRequired) as raised:
        step(first_party=False, prompt=frozenset({"none"}))
    assert raised.value.error == "consent_required"


def test_first_party_client_never_asks_for_consent():
    assert step(first_party=True, prompt=frozenset({"consent"})) is None


def test_steps_come_in_order_login_mfa_consent():
    assert step(sso=None, require_mfa=True, first_party=False) == LOGIN
    assert step(sso=PASSWORD_ONLY, require_mfa=True, first_party=False) == MFA


def test_prompt_values_are_a_set_and_unknown_ones_are_ignored():
    assert parse_prompt("login  consent") == {"login", "consent"}
    assert parse_prompt("select_account bogus") == {"select_account"}
    assert parse_prompt(None) == frozenset()


def test_prompt_none_with_another_value_is_invalid():
    with pytest.raises(ValueError):
        parse_prompt("none login")


@pytest.mark.parametrize(
    "raw, parsed", [(None, None), ("", None), ("0", 0), ("15000", 15000), ("9" * 30, int("9" * 30))]
)
def test_max_age_is_whole_seconds(raw, parsed):
    assert parse_max_age(raw) == parsed


def test_max_age_of_any_length_is_a_number():
    """Python refuses to read more than 4300 digits; its message is no answer for an RP."""
    assert parse_max_age("9" * 5000) >= 10**100
    assert parse_max_age("0" * 5000 + "7") == 7


@pytest.mark.parametrize("raw", ["-1", "1.5", "soon", "²", "١٢"])
def test_max_age_that_is_not_whole_seconds_is_invalid(raw):
    with pytest.raises(ValueError):
        parse_max_age(raw)


def test_prompt_select_account_signs_in_again_once_per_request():
    assert step(prompt=frozenset({"select_account"})) == LOGIN
    fresh = Session(sub="u-1", auth_time=AT, acr=ACR_MFA)
    assert step(sso=fresh, prompt=frozenset({"select_account"}), started_at=AT - timedelta(seconds=5)) is None
