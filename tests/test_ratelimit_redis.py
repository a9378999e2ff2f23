"""Rate limits on a real Redis shared by several instances, and what happens
while Redis is away (reliability review defects 2, 3, 9; security audit F-08)."""

import time

import flask_limiter._extension
import pytest
from rp import RP, make_user


@pytest.fixture
def app(make_app, redis_url):
    return make_app(RATELIMIT_STORAGE_URI=redis_url)


def wrong_password(client, n: int):
    """A wrong password for an address without an account (no account lockout involved)."""
    return client.post("/login", data={"email": f"nobody{n}@example.com", "password": "not the password 123"})


class LimiterClock:
    """Flask-Limiter waits a growing number of seconds (wall clock) between
    checks of a storage it found down; tests move that clock instead of waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.fixture
def limiter_clock(monkeypatch) -> LimiterClock:
    clock = LimiterClock()
    monkeypatch.setattr(flask_limiter._extension, "time", clock)
    return clock


def test_the_per_ip_login_limit_is_shared_by_two_instances_on_one_redis(app, make_app, redis_url):
    """Two instances (as behind a load balancer) count one client's wrong
    passwords together: the 21st of `20 per minute` is refused, whichever answers."""
    other = make_app(RATELIMIT_STORAGE_URI=redis_url)
    browsers = [app.test_client(), other.test_client()]
    statuses = [wrong_password(browsers[n % 2], n).status_code for n in range(21)]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429
    assert wrong_password(browsers[0], 99).status_code == 429  # and the first instance agrees


def test_signin_and_token_answer_while_redis_is_down_and_limiting_resumes_when_it_returns(
    app, make_app, redis_server, redis_url, clock, limiter_clock
):
    """Redis stops: sign-in and /token still answer (no 500), readiness says
    the limits are degraded; Redis returns: the instances share their counts
    again, with no restart."""
    user = make_user(app)
    clock.advance(seconds=30)
    browser = app.test_client()
    rp = RP(app, browser, clock, user)
    assert app.test_client().get("/health/ready").json["checks"]["rate_limits"]["status"] == "ok"

    redis_server.stop()
    try:
        code = rp.login_code(scope="openid offline_access")  # POST /login and /login/code on the way
        tokens = rp.token(code)
        assert tokens.status_code == 200, tokens.json
        assert rp.refresh(tokens.json["refresh_token"]).status_code == 200
        assert rp.token("not-a-code", secret="wrong secret").status_code == 401  # invalid_client, counted
        assert wrong_password(app.test_client(), 0).status_code == 401
        ready = app.test_client().get("/health/ready")
        assert ready.status_code == 200
        assert ready.json["status"] == "degraded"
        assert ready.json["checks"]["rate_limits"]["status"] == "degraded"
        assert "unreachable" in ready.json["checks"]["rate_limits"]["detail"]
    finally:
        redis_server.start()

    limiter_clock.offset = 120  # past Flask-Limiter's wait before it tries the storage again
    assert app.test_client().get("/health/ready").json["checks"]["rate_limits"]["status"] == "ok"
    other = make_app(RATELIMIT_STORAGE_URI=redis_url)
    browsers = [app.test_client(), other.test_client()]
    statuses = [wrong_password(browsers[n % 2], 100 + n).status_code for n in range(21)]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429  # counted in Redis again, across both instances
