"""The guessing limit: wrong passwords and codes are counted, and after
LOGIN_FAILURES_BEFORE_LOCKOUT of them a lockout doubles each time up to
LOGIN_LOCKOUT_MAX. It holds when the guesses come all at once (from many
addresses, to several instances), and the pages say how many tries are left
and exactly until when a lockout lasts."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from mailserver import text_of
from rp import make_user

from oidc_provider import audit
from oidc_provider.db import db, now, token_hash
from oidc_provider.models import LoginThrottle, User

PARALLEL = 20  # guesses released at once
ROUNDS = 3  # lockouts in a row: each must double the previous one


def path(response) -> str:
    return urlsplit(response.location).path


def alert(response) -> str:
    """The message a person reads in the page's alert."""
    found = re.search(r'role="alert">([^<]+)<', response.get_data(as_text=True))
    return found.group(1) if found else ""


def at_once(browsers, attempt) -> list[int]:
    """Run `attempt(browser)` in one thread per browser, released together by
    a barrier (each request runs in its own app context, as on separate
    instances); the response statuses."""
    barrier = threading.Barrier(len(browsers))
    statuses: list[int | None] = [None] * len(browsers)
    failures: list[BaseException] = []

    def run(index: int, browser) -> None:
        try:
            barrier.wait(timeout=30)
            statuses[index] = attempt(browser).status_code
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i, b)) for i, b in enumerate(browsers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    return statuses


def browsers(app, count: int = PARALLEL) -> list:
    """Browsers on as many addresses, so the per-IP limit stays out of the way."""
    made = [app.test_client() for _ in range(count)]
    for number, browser in enumerate(made, start=1):
        browser.environ_base["REMOTE_ADDR"] = f"192.0.2.{number}"
    return made


def events(app, name: str, email: str) -> int:
    with app.app_context():
        return len(audit.query(email=email, events=[name], limit=10_000))


def counted_state(app, model, key) -> tuple[int, timedelta | None]:
    """(lockouts so far, how long the current lockout still lasts)."""
    with app.app_context():
        row = db.session.get(model, key)
        return row.lockouts, (row.locked_until - now()) if row.locked_until else None


def wrong_code(totp, moment) -> str:
    """A code that no adjacent time step accepts."""
    valid = {totp.at(moment + timedelta(seconds=s)) for s in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def assert_rounds_of_parallel_guesses(app, clock, attempt, judged, state, tries):
    """ROUNDS times: PARALLEL guesses at once get at most `tries` judged and
    start exactly one lockout, which doubles round after round."""
    base = app.config["LOGIN_LOCKOUT_BASE"]
    for round_ in range(1, ROUNDS + 1):
        judged_before, locks_before = judged("failed"), judged("locked_out")
        statuses = at_once(tries, attempt)
        assert set(statuses) <= {401, 429}, statuses
        assert judged("failed") - judged_before <= app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]
        assert judged("locked_out") - locks_before == 1
        lockouts, left = state()
        assert lockouts == round_  # no lost update: every lockout escalates
        assert left == timedelta(seconds=base * 2 ** (round_ - 1))
        clock.advance(left.total_seconds())


@pytest.fixture(params=["sqlite", "postgresql"])
def any_app(request, make_app):
    """The provider on SQLite, then on PostgreSQL (migrated schema)."""
    if request.param == "sqlite":
        return make_app()
    return request.getfixturevalue("pg_app")


def test_parallel_wrong_passwords_get_only_the_allowed_tries_and_each_lockout_doubles(any_app, clock):
    """F-07, reliability defect 1: the count and the lockout are single
    conditional updates, not read-modify-write."""
    user = make_user(any_app, totp=False)

    def attempt(browser):
        return browser.post("/login", data={"email": user.email, "password": "not the password at all"})

    assert_rounds_of_parallel_guesses(
        any_app,
        clock,
        attempt,
        judged=lambda kind: events(any_app, "signin_failed" if kind == "failed" else kind, user.email),
        state=lambda: counted_state(any_app, User, user.id),
        tries=browsers(any_app),
    )


def test_parallel_wrong_codes_get_only_the_allowed_tries_and_each_lockout_doubles(any_app, clock):
    """F-07 for authenticator codes: an attacker who has the password."""
    user = make_user(any_app)
    clock.advance(seconds=30)
    tries = browsers(any_app)
    for browser in tries:
        response = browser.post("/login", data={"email": user.email, "password": user.password})
        assert path(response) == "/login/code"

    def attempt(browser):
        return browser.post("/login/code", data={"code": wrong_code(user.totp, clock.now)})

    assert_rounds_of_parallel_guesses(
        any_app,
        clock,
        attempt,
        judged=lambda kind: events(any_app, "mfa_failed" if kind == "failed" else kind, user.email),
        state=lambda: counted_state(any_app, User, user.id),
        tries=tries,
    )


def test_parallel_wrong_passwords_for_an_address_without_an_account_are_limited_alike(any_app, clock):
    """F-07 for LoginThrottle: its lockout must stay an account's twin."""
    address = "nobody@example.com"

    def attempt(browser):
        return browser.post("/login", data={"email": address, "password": "not the password at all"})

    assert_rounds_of_parallel_guesses(
        any_app,
        clock,
        attempt,
        judged=lambda kind: events(any_app, "signin_failed" if kind == "failed" else kind, address),
        state=lambda: counted_state(any_app, LoginThrottle, token_hash(address)),
        tries=browsers(any_app),
    )


# -- what the pages say ---------------------------------------------------------------------------


def sign_in_password(browser, user, password=None):
    return browser.post("/login", data={"email": user.email, "password": password or user.password})


def test_the_password_page_warns_before_the_last_try(app, client, user):
    """UX defect 6: "1 try left" before the try that locks, not after."""
    limit = app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]
    answers = [sign_in_password(client, user, "not the password at all") for _ in range(limit)]
    assert [a.status_code for a in answers] == [401] * (limit - 1) + [429]
    assert all("try left" not in alert(a) for a in answers[: limit - 2])
    assert alert(answers[limit - 2]) == (
        "The email address or password is not right. 1 try left before a lockout of 1 minute."
    )
    assert alert(answers[-1]) == "Too many failed attempts. For your security, try again in 60 seconds."


def test_the_code_page_warns_before_the_last_try(app, client, user, clock):
    limit = app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]
    sign_in_password(client, user)
    for _ in range(limit - 2):
        assert client.post("/login/code", data={"code": wrong_code(user.totp, clock.now)}).status_code == 401
    assert "try left" not in alert(client.get("/login/code"))
    last_but_one = client.post("/login/code", data={"code": wrong_code(user.totp, clock.now)})
    assert last_but_one.status_code == 401
    assert alert(last_but_one).endswith(" 1 try left before a lockout of 1 minute.")
    page = client.get("/login/code")  # coming back later: still said before the code is typed
    assert page.status_code == 200 and alert(page) == "1 try left before a lockout of 1 minute."


def test_the_code_page_says_the_account_is_locked_and_exactly_until_when(app, client, user, clock):
    """UX defects 5 and 6: said before any code is typed, no code field, no
    rounded "1 minute" when 7 seconds are left; a long lockout gives the time."""
    limit = app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]
    sign_in_password(client, user)
    for _ in range(limit):
        client.post("/login/code", data={"code": wrong_code(user.totp, clock.now)})

    page = client.get("/login/code")
    assert page.status_code == 429
    assert alert(page) == "Too many failed attempts. For your security, try again in 60 seconds."
    assert 'name="code"' not in page.get_data(as_text=True)
    clock.advance(seconds=53)
    assert alert(client.get("/login/code")).endswith("try again in 7 seconds.")
    locked = client.post("/login/code", data={"code": user.totp.at(clock.now)})  # even the right code
    assert locked.status_code == 429 and alert(locked).endswith("try again in 7 seconds.")

    clock.advance(seconds=7)  # over; the next lockout lasts twice as long
    for _ in range(limit):
        client.post("/login/code", data={"code": wrong_code(user.totp, clock.now)})
    assert clock.now.strftime("%H:%M:%S") == "12:01:30"
    page = client.get("/login/code")
    assert page.status_code == 429
    assert alert(page) == "Too many failed attempts. For your security, try again at 12:04 UTC."
    clock.advance(seconds=150)  # 12:04:00, the minute the page named
    response = client.post("/login/code", data={"code": user.totp.at(clock.now)})
    assert response.status_code == 302


def test_no_code_is_sent_while_locked_out(mail_app, smtp_server, clock):
    """UX defect 5: no email that the page would then refuse."""
    user = make_user(mail_app)
    client = mail_app.test_client()
    with mail_app.app_context():
        from oidc_provider import mfa

        method = mfa.start_enrolment(db.session.get(User, user.id), "email", "buffy.codes@example.org")
        assert mfa.send_code(method, "enrol").sent
        code = re.search(r"\b(\d{6})\b", text_of(smtp_server.last("buffy.codes@example.org"))).group(1)
        assert mfa.confirm_enrolment(method, code).ok
        method_id = method.id
    clock.advance(seconds=60)
    sign_in_password(client, user)
    for _ in range(mail_app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]):
        client.post("/login/code", data={"code": wrong_code(user.totp, clock.now)})
    page = client.get("/login/code").get_data(as_text=True)
    assert "Send a code to" not in page and "Send me a code" not in page

    response = client.post("/login/code/send", data={"method": str(method_id)})
    assert len(smtp_server.to("buffy.codes@example.org")) == 1  # the enrolment code only
    page = client.get(response.location)
    assert page.status_code == 429 and "try again in 60 seconds" in alert(page)

    clock.advance(seconds=60)
    response = client.post("/login/code/send", data={"method": str(method_id)})
    assert len(smtp_server.to("buffy.codes@example.org")) == 2
    assert "We&#39;re sending a code" in client.get(response.location).get_data(as_text=True)


def test_a_replayed_code_is_refused_and_does_not_count_as_a_wrong_guess(app, rp, clock):
    """I-05: a double submit, or a relaying phisher, must not lock the owner out."""
    sign_in_password(rp.browser, rp.user)
    used = rp.user.totp.at(clock.now)
    assert rp.browser.post("/login/code", data={"code": used}).status_code == 302
    rp.browser.post("/logout", data={"confirm": "1"})
    clock.advance(seconds=30)  # the used code is still within the accepted drift

    sign_in_password(rp.browser, rp.user)
    for _ in range(app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"] + 1):
        replayed = rp.browser.post("/login/code", data={"code": used})
        assert replayed.status_code == 401
        assert alert(replayed) == "That code was already used. Wait for the next code in your app."
    assert events(app, "mfa_failed", rp.user.email) == 0
    clock.advance(seconds=30)
    assert rp.browser.post("/login/code", data={"code": rp.user.totp.at(clock.now)}).status_code == 302
