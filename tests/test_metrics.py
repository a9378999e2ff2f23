"""Prometheus metrics at /metrics: security events counted where the audit log
records them, requests by endpoint name, and who may read them."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from oidc_provider import metrics

OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}


def samples(client, **kwargs) -> dict[tuple, float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def wrong_password(client, email: str):
    return client.post("/login", data={"email": email, "password": "not the password 123"})


def test_signin_wrong_password_and_tokens_are_counted(app, rp, client):
    before = samples(client)
    rp.tokens(scope="openid offline_access")
    assert wrong_password(app.test_client(), "nobody@example.com").status_code == 401
    after = samples(client)

    assert delta(before, after, "portal_signins_total", outcome="ok") == 1
    assert delta(before, after, "portal_signins_total", outcome="failed") == 1
    assert delta(before, after, "portal_mfa_total", method="totp", outcome="ok") == 1
    assert delta(before, after, "portal_tokens_issued_total", grant_type="authorization_code") == 1
    assert delta(before, after, "portal_http_request_duration_seconds_count", endpoint="login.password") == 2
    assert delta(before, after, "portal_http_request_duration_seconds_count", endpoint="endpoints.token") == 1
    assert delta(before, after, "portal_http_responses_total", status="4xx") == 1
    assert delta(before, after, "portal_http_responses_total", status="3xx") >= 4  # the redirects of the flow


def test_lockouts_and_refresh_grants_are_counted(app, rp, client, user):
    before = samples(client)
    tokens = rp.tokens(scope="openid offline_access")
    assert rp.refresh(tokens["refresh_token"]).status_code == 200
    browser = app.test_client()
    statuses = [wrong_password(browser, user.email).status_code for _ in range(5)]
    after = samples(client)
    assert statuses[-1] == 429
    assert delta(before, after, "portal_lockouts_total") == 1
    assert delta(before, after, "portal_signins_total", outcome="failed") == 5
    assert delta(before, after, "portal_tokens_issued_total", grant_type="refresh_token") == 1


def test_mfa_outcome_by_method_from_the_audit_details():
    """The method detail names the method when the event carries one; else
    the amr values of the sign-in do (sms), and a trusted computer is no MFA."""
    failed_email = metrics.MFA.labels("email", "failed")
    ok_sms = metrics.MFA.labels("sms", "ok")
    ok_otp = metrics.MFA.labels("otp", "ok")
    counts = [failed_email._value.get(), ok_sms._value.get(), ok_otp._value.get()]
    metrics.count_event("mfa_failed", "failed", {"method": "email"})
    metrics.count_event("signin_ok", "ok", {"amr": ["pwd", "otp", "sms", "mfa"]})
    metrics.count_event("signin_ok", "ok", {"amr": ["pwd"]})  # trusted computer: no code asked
    assert [failed_email._value.get(), ok_sms._value.get(), ok_otp._value.get()] == [
        counts[0] + 1,
        counts[1] + 1,
        counts[2],
    ]


def test_latency_is_labelled_by_endpoint_name_never_by_path(client):
    secret = "a-link-token-that-must-not-be-a-label"
    client.get(f"/activate/{secret}")
    client.get(f"/no/such/page/{secret}")
    body = client.get("/metrics").get_data(as_text=True)
    assert secret not in body
    assert 'endpoint="account.activate"' in body and 'endpoint="(no route)"' in body


def test_metrics_only_for_loopback_clients_without_a_token(client):
    assert client.get("/metrics").status_code == 200
    refused = client.get("/metrics", environ_base=OUTSIDE)
    assert refused.status_code == 403
    assert b"portal_" not in refused.data


def test_metrics_token_is_required_when_set(make_app):
    client = make_app(METRICS_TOKEN="scrape-token-0123456789").test_client()
    assert client.get("/metrics").status_code == 401  # even from loopback
    wrong = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-wrong"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/metrics", headers={"Authorization": "Basic c2NyYXBlLXRva2Vu"}).status_code == 401
    right = client.get(
        "/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"}, environ_base=OUTSIDE
    )
    assert right.status_code == 200 and b"portal_signins_total" in right.data


def test_wrong_metrics_tokens_are_rate_limited(make_app):
    client = make_app(
        METRICS_TOKEN="scrape-token-0123456789", RATELIMIT_CLIENT_AUTH="3 per minute"
    ).test_client()
    guesses = [
        client.get("/metrics", headers={"Authorization": f"Bearer guess-{n}"}).status_code for n in range(4)
    ]
    assert guesses == [401, 401, 401, 429]


def test_outbox_backlog_is_read_from_the_hook_at_scrape_time(app, client, clock, monkeypatch):
    from oidc_provider import delivery

    assert value(samples(client), "portal_outbox_depth") == 0  # the real outbox, empty
    with app.test_request_context():
        delivery.send_sms("+31612345678", "a code")
    clock.advance(seconds=90)
    found = samples(client)
    assert value(found, "portal_outbox_depth") == 1
    assert value(found, "portal_outbox_oldest_age_seconds") == 90
    monkeypatch.setattr(metrics, "_outbox", None)
    metrics.watch_outbox(lambda: (3, 42.5))
    found = samples(client)
    assert value(found, "portal_outbox_depth") == 3
    assert value(found, "portal_outbox_oldest_age_seconds") == 42.5


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/metrics"])
def test_operations_endpoints_set_no_cookie(client, path):
    assert "Set-Cookie" not in client.get(path).headers
