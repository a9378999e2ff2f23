"""argon2id hashing and the NIST SP 800-63B password policy."""

from __future__ import annotations

import time

import pytest

from oidc_provider import passwords

GOOD = "correct horse battery staple"
EMAIL = "ann.smith@example.com"


def test_hash_is_argon2id_with_owasp_parameters_and_verifies():
    stored = passwords.hash_password(GOOD)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert GOOD not in stored
    assert passwords.verify_password(stored, GOOD)
    assert not passwords.verify_password(stored, GOOD + " ")
    assert passwords.hash_password(GOOD) != stored  # salted


@pytest.mark.parametrize("stored", ["", None, "plain text", "$argon2id$v=19$broken", "$2b$12$bcrypt"])
def test_verify_never_raises_on_bad_stored_hashes(stored):
    assert passwords.verify_password(stored, GOOD) is False


@pytest.mark.parametrize("typed", ["", None, 12345, "\x00" * 10])
def test_verify_never_raises_on_bad_input(typed):
    assert passwords.verify_password(passwords.hash_password(GOOD), typed) is False


def test_unicode_is_normalised_so_the_same_password_matches():
    composed, decomposed = "caf\u00e9 au lait ici!", "cafe\u0301 au lait ici!"
    assert passwords.verify_password(passwords.hash_password(composed), decomposed)


def test_needs_rehash_when_parameters_change():
    assert not passwords.needs_rehash(passwords.hash_password(GOOD))
    weaker = (
        "$argon2id$v=19$m=8192,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$6Yq2Xq3Ytp1E6nm3o7PjJgYHz3oZ1u3tJ6gZ9Q9QnWo"
    )
    assert passwords.needs_rehash(weaker)
    assert passwords.needs_rehash("not a hash")


def test_dummy_verify_costs_about_what_a_real_verify_costs():
    stored = passwords.hash_password(GOOD)
    passwords.dummy_verify("warm the cache")

    def timed(fn) -> float:
        start = time.perf_counter()
        for _ in range(5):
            fn()
        return time.perf_counter() - start

    real = timed(lambda: passwords.verify_password(stored, "wrong password here"))
    dummy = timed(lambda: passwords.dummy_verify("wrong password here"))
    assert 1 / 3 < dummy / real < 3


def test_good_password_has_no_problems():
    assert passwords.policy_problems(GOOD, EMAIL) == []
    assert passwords.policy_problems("ÜberSicher—パスワード-ok", EMAIL) == []  # any characters


def test_too_short_is_refused_with_the_count():
    assert passwords.policy_problems("elevenchars", EMAIL) == [
        "Use at least 12 characters (this one has 11)."
    ]
    assert passwords.policy_problems("twelve chars", EMAIL) == []


def test_long_passwords_are_allowed_up_to_1024():
    assert passwords.policy_problems("long horse " * 93, EMAIL) == []  # 1023 characters
    assert passwords.policy_problems("x" * 1025, EMAIL) == ["Use at most 1024 characters."]


@pytest.mark.parametrize(
    "common", ["qwertyuiop123", "1qaz2wsx3edc", "PASSWORD1234", "Password2024!", "!!sunshine123"]
)
def test_common_passwords_and_their_decorations_are_refused(common):
    [problem] = passwords.policy_problems(common, EMAIL)
    assert "too common" in problem


@pytest.mark.parametrize(
    "weak", ["aaaaaaaaaaaa", "abababababab", "123456789012", "qwertyuiopas", "zyxwvutsrqpo"]
)
def test_repetitions_and_sequences_are_refused(weak):
    [problem] = passwords.policy_problems(weak, EMAIL)
    assert "repetition or sequence" in problem


def test_password_containing_the_email_local_part_is_refused():
    [problem] = passwords.policy_problems("my-Ann.Smith-is-great", EMAIL)
    assert "email address" in problem
    assert passwords.policy_problems("jo likes long walks", "jo@example.com") == []  # too short to judge


def test_no_composition_rules():
    assert passwords.policy_problems("all lower case words here", EMAIL) == []
    assert passwords.policy_problems("8461 2093 7755 1188", EMAIL) == []


def test_bundled_list_is_large_and_lowercase():
    common = passwords.common_passwords()
    assert len(common) >= 10_000
    assert "password" in common and "123456" in common
    assert all(p == p.lower() for p in common)


def test_strength_hint_states_the_rules():
    hint = passwords.strength_hint()
    assert "12 characters" in hint and "common" in hint
