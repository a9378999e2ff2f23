"""Account activity (UX defect 19): My details showed the last 10 sign-ins
and wrong tries only; now a paged list holds every sign-in, wrong password
and code, lockout, password change or reset and change of sign-in methods."""

from __future__ import annotations

import html
import re

from rp import make_user

from oidc_provider import activity, audit
from oidc_provider.db import db
from oidc_provider.models import User


def words(response) -> str:
    inline = re.sub(r"</?(?:span|a|strong|wbr|code)\b[^>]*>", "", response.get_data(as_text=True))
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def test_activity_lists_lockouts_password_changes_and_method_changes(app, rp, clock):
    browser = app.test_client()  # someone guessing, then locked out
    for _ in range(5):
        browser.post("/login", data={"email": rp.user.email, "password": "not the password at all"})
    clock.advance(minutes=2)
    rp.sign_in(rp.authorize())
    new = "a brand new passphrase 2027"
    rp.browser.post("/account/password", data={"current": rp.user.password, "password": new, "confirm": new})
    with app.app_context():
        audit.record("mfa_added", user=db.session.get(User, rp.user.id), kind="email", target="b***@example.org")
        db.session.commit()

    page = words(rp.browser.get("/account/activity"))
    for seen in (
        "Sign-in method added: b***@example.org",
        "Password changed",
        "Signed in to Conformance client",
        "Sign-in locked for 1 minute after too many wrong tries",
        "Wrong password",
    ):
        assert seen in page, seen
    assert page.index("Password changed") < page.index("Signed in to") < page.index("Sign-in locked")
    assert "26 November 2026, 12:00 UTC" in page


def test_activity_goes_back_a_page_at_a_time(app, rp, clock):
    with app.app_context():
        user = db.session.get(User, rp.user.id)
        for _ in range(activity.PAGE_SIZE + 3):
            audit.record("signin_failed", user=user, outcome="failed")
            clock.advance(seconds=1)
        db.session.commit()
    rp.sign_in(rp.authorize())
    first = rp.browser.get("/account/activity")
    assert words(first).count("Wrong password") == activity.PAGE_SIZE - 1  # the sign-in is newest
    assert 'href="/account/activity?page=2">Older</a>' in first.get_data(as_text=True)
    second = rp.browser.get("/account/activity?page=2")
    assert words(second).count("Wrong password") == 4 and ">Newer</a>" in second.get_data(as_text=True)
    assert ">Older</a>" not in second.get_data(as_text=True)
    for bad in ("3", "0", "x", "99999999999", "-1"):
        assert rp.browser.get(f"/account/activity?page={bad}").status_code == 404, bad


def test_my_details_shows_the_latest_activity_and_links_to_the_rest(rp):
    rp.sign_in(rp.authorize())
    page = rp.browser.get("/account")
    assert "Recent activity" in words(page) and "Signed in to Conformance client" in words(page)
    assert 'href="/account/activity">See all account activity</a>' in page.get_data(as_text=True)


def test_nobody_sees_anothers_activity(app, rp, clock):
    other = make_user(app, email="spike@example.com")
    with app.app_context():
        audit.record("password_changed", user=db.session.get(User, other.id))
        db.session.commit()
    rp.sign_in(rp.authorize())
    assert "Password changed" not in words(rp.browser.get("/account/activity"))
    assert rp.browser.application.test_client().get("/account/activity").status_code == 302
