"""Liveness and readiness for load balancers (reliability review defect 13)."""

import pytest

from oidc_provider import health


def test_liveness_answers_without_checking_anything(client, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "broken", lambda: health.down("never asked"))
    response = client.get("/health/live")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readiness_lists_each_check(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json == {
        "status": "ok",
        "checks": {
            "database": {"status": "ok"},
            "rate_limits": {"status": "ok", "detail": "memory:// (this process)"},
            "signing_keys": {"status": "ok"},
            "outbox": {"status": "ok"},
        },
    }


def test_readiness_is_degraded_when_no_worker_sends(app, client, clock):
    """A message overdue for longer than HEALTH_OUTBOX_MAX_AGE: still ready (the
    instance serves), but degraded, saying why."""
    from oidc_provider import delivery

    with app.test_request_context():
        delivery.send_sms("+31612345678", "a code")
    clock.advance(seconds=app.config["HEALTH_OUTBOX_MAX_AGE"] + 1)
    response = client.get("/health/ready")
    assert response.status_code == 200 and response.json["status"] == "degraded"
    assert "is a worker running?" in response.json["checks"]["outbox"]["detail"]


def test_readiness_is_down_when_the_signing_keys_cannot_be_read(make_app):
    """Keys made under one SECRET_KEY cannot be opened under another: the instance must get no traffic."""
    first = make_app()
    with first.app_context():
        first.extensions["keys"].public_jwks()
    other = make_app(SECRET_KEY="another-secret-key", OIDC_KEY_CACHE_SECONDS=0)
    response = other.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.json["checks"]["signing_keys"]["status"] == "down"


@pytest.mark.parametrize(
    ("check", "status", "code", "entry"),
    [
        (lambda: health.ok("12 waiting"), "ok", 200, {"status": "ok", "detail": "12 waiting"}),
        (lambda: health.degraded("slow"), "degraded", 200, {"status": "degraded", "detail": "slow"}),
        (lambda: health.down("no RS256 key"), "down", 503, {"status": "down", "detail": "no RS256 key"}),
        (lambda: True, "ok", 200, {"status": "ok"}),
        (lambda: False, "down", 503, {"status": "down", "detail": "failed"}),
        (lambda: 1 / 0, "down", 503, {"status": "down", "detail": "ZeroDivisionError: division by zero"}),
    ],
)
def test_registered_checks_decide_readiness(client, monkeypatch, check, status, code, entry):
    """Other modules register their checks with one line; the worst status wins,
    and only `down` takes the instance out (degraded still serves)."""
    monkeypatch.setitem(health.CHECKS, "extra", check)
    response = client.get("/health/ready")
    assert response.status_code == code
    assert response.json["status"] == status
    assert response.json["checks"]["extra"] == entry
    assert response.json["checks"]["database"] == {"status": "ok"}
    assert client.get("/healthz").status_code == code  # the older name answers the same


def test_register_adds_a_check_under_its_name(monkeypatch):
    monkeypatch.setattr(health, "CHECKS", dict(health.CHECKS))
    health.register("signing_keys", lambda: health.down("no key for ES256"))
    assert health.CHECKS["signing_keys"]().detail == "no key for ES256"


def test_redis_down_without_fallback_is_down(make_app, monkeypatch):
    app = make_app(
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0",  # nothing listens on port 1
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=False,
    )
    response = app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.json["checks"]["rate_limits"] == {"status": "down", "detail": "redis unreachable"}
