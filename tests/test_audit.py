"""The audit log: what `record` stores, what `query` finds, `audit show`."""

from __future__ import annotations

import pytest

from oidc_provider import audit
from oidc_provider.db import db
from oidc_provider.models import AuditEvent, User


@pytest.fixture
def ann(app):
    with app.app_context():
        user = User(sub="sub-ann", email="ann@example.com", name="Ann", password_hash="x")
        db.session.add(user)
        db.session.commit()
        return user.id


def test_record_takes_ip_and_browser_from_the_request_and_email_from_the_user(app, ann):
    headers = {"User-Agent": "Firefox/140"}
    with app.test_request_context("/", headers=headers, environ_base={"REMOTE_ADDR": "192.0.2.7"}):
        user = db.session.get(User, ann)
        event = audit.record("signin_ok", user=user, client_id="client", amr=["pwd", "otp"])
        db.session.commit()
        assert (event.ip, event.user_agent, event.email) == ("192.0.2.7", "Firefox/140", "ann@example.com")
        assert (event.user_id, event.outcome, event.client_id) == (ann, "ok", "client")
        assert event.details == {"amr": ["pwd", "otp"]}


def test_record_works_without_a_request_and_leaves_the_commit_to_the_caller(app):
    with app.app_context():
        event = audit.record("key_rotated", outcome="ok", kid="abc")
        assert event.ip is None and event.user_agent is None and event.details == {"kid": "abc"}
        db.session.rollback()  # the change it described did not happen: nor did the event
        assert db.session.scalars(db.select(AuditEvent)).all() == []


def test_record_cuts_overlong_values_to_their_columns(app):
    with app.app_context():
        event = audit.record("signin_failed", email="a" * 400 + "@example.com", user_agent="x" * 900)
        db.session.commit()
        assert len(event.email) == 320 and len(event.user_agent) == 500


def test_query_filters_and_returns_newest_first(app, ann, clock):
    with app.app_context():
        user = db.session.get(User, ann)
        audit.record("registered", user=user)
        clock.advance(days=3)
        since = clock.now.replace(tzinfo=None)
        audit.record("signin_failed", email="ann@example.com", outcome="failed")
        clock.advance(hours=1)
        audit.record("signin_ok", user=user)
        audit.record("signin_ok", email="bob@example.com")
        db.session.commit()

        assert [e.event for e in audit.query(user_id=ann)] == ["signin_ok", "registered"]
        both = audit.query(user_id=ann, email="ann@example.com")
        assert [e.event for e in both] == ["signin_ok", "signin_failed", "registered"]
        assert [e.event for e in audit.query(since=since, limit=2)] == ["signin_ok", "signin_ok"]
        assert [e.outcome for e in audit.query(events=["signin_failed"])] == ["failed"]


def test_audit_show_prints_aligned_columns(app, ann, clock):
    with app.test_request_context(environ_base={"REMOTE_ADDR": "203.0.113.5"}):
        user = db.session.get(User, ann)
        audit.record("registered", user=user)
        clock.advance(days=10)
        audit.record("signin_failed", email="ann@example.com", outcome="failed", reason="wrong password")
        audit.record("signin_ok", email="bob@example.com", client_id="forum")
        db.session.commit()
    runner = app.test_cli_runner()

    lines = runner.invoke(args=["audit", "show"]).output.splitlines()
    assert lines[0].split()[:4] == ["time", "(UTC)", "event", "outcome"]
    assert [line.split()[2] for line in lines[1:]] == ["registered", "signin_failed", "signin_ok"]
    assert len({line.index(line.split()[2]) for line in lines}) == 1  # the event column lines up
    assert "reason=wrong password" in lines[2] and "forum" in lines[3]

    mine = runner.invoke(args=["audit", "show", "--user", "Ann@Example.com"]).output.splitlines()
    assert [line.split()[2] for line in mine[1:]] == ["registered", "signin_failed"]
    recent = runner.invoke(args=["audit", "show", "--since", "7d"]).output.splitlines()
    assert len(recent) == 3
    dated = runner.invoke(args=["audit", "show", "--since", "2026-12-01"]).output.splitlines()
    assert len(dated) == 3
    assert len(runner.invoke(args=["audit", "show", "--limit", "1"]).output.splitlines()) == 2


def test_audit_show_refuses_a_bad_since_with_a_message(app):
    result = app.test_cli_runner().invoke(args=["audit", "show", "--since", "last tuesday"])
    assert result.exit_code == 2 and "use a date (2026-11-01) or an age" in result.output
