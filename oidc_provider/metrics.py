"""Prometheus metrics at `/metrics`.

Security events are counted where each one is recorded (`audit.record` calls
`count_event`), requests by an after-request hook: a few dictionary lookups
and no database query per request. Under `flask serve` the worker processes
share their counts through files in `PROMETHEUS_MULTIPROC_DIR` (prometheus
client's multiprocess mode) and any worker answers for all.

The endpoint answers a client with `Authorization: Bearer <METRICS_TOKEN>`
when that setting is set, and only loopback clients otherwise.

The outbox's backlog is read at scrape time from the function handed to
`watch_outbox(fn)`: `fn()` returns (messages waiting, age in seconds of the
oldest or None).
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from .db import same
from .security import csrf, limiter

bp = Blueprint("metrics", __name__)

# In multiprocess mode every metric below writes into this folder as soon as it
# is made (any `flask` command imports them): it must exist first.
if _folder := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_folder, mode=0o700, exist_ok=True)

SIGNINS = Counter("portal_signins_total", "Finished and failed sign-ins (password step).", ["outcome"])
MFA = Counter("portal_mfa_total", "One-time codes checked at sign-in, by method.", ["method", "outcome"])
LOCKOUTS = Counter("portal_lockouts_total", "Temporary lockouts after too many wrong passwords or codes.")
TOKENS = Counter("portal_tokens_issued_total", "Tokens issued at /token, by grant type.", ["grant_type"])
RESPONSES = Counter("portal_http_responses_total", "HTTP responses by status class.", ["status"])
LATENCY = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer a request, by endpoint (the route's name, never its path).",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRANTS = {"authorization_code", "refresh_token"}
STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
# method named by the amr values of a sign-in (RFC 8176) when the event does not name it
AMR_METHOD = (("sms", "sms"), ("otp", "otp"))


def _mfa_method(details: dict[str, Any]) -> str | None:
    if method := details.get("method"):
        return str(method)[:20]
    amr = details.get("amr") or ()
    if "mfa" not in amr:
        return None  # a trusted computer skipped the code
    return next((name for value, name in AMR_METHOD if value in amr), "otp")


def count_event(event: str, outcome: str, details: dict[str, Any]) -> None:
    """Count a security event as `audit.record` records it."""
    if event == "signin_ok":
        SIGNINS.labels("ok").inc()
        if method := _mfa_method(details):
            MFA.labels(method, "ok").inc()
    elif event == "signin_failed":
        SIGNINS.labels("failed").inc()
    elif event == "mfa_failed":
        MFA.labels(_mfa_method(details) or "unknown", "failed").inc()
    elif event == "locked_out":
        LOCKOUTS.inc()


def _begin() -> None:
    g.metrics_started = time.perf_counter()


def _end(response: Response) -> Response:
    started = g.get("metrics_started")
    observe(
        request.endpoint, response.status_code, time.perf_counter() - started if started is not None else None
    )
    if request.endpoint == "endpoints.token" and response.status_code == 200:
        grant = request.form.get("grant_type", "")
        TOKENS.labels(grant if grant in GRANTS else "other").inc()
    return response


def observe(endpoint: str | None, status: int, seconds: float | None) -> None:
    """A request answered: its latency by endpoint name, its status class."""
    if seconds is not None:
        LATENCY.labels(endpoint or "(no route)").observe(seconds)
    RESPONSES.labels(STATUS_CLASSES.get(status // 100, "other")).inc()


# -- the outbox, read at scrape time ------------------------------------------------

_outbox: Callable[[], tuple[int, float | None]] | None = None


def watch_outbox(backlog: Callable[[], tuple[int, float | None]]) -> None:
    """Publish the outbox's depth and the age of its oldest message from `backlog()`."""
    global _outbox
    _outbox = backlog


class OutboxCollector:
    def collect(self) -> Iterator[Metric]:
        if _outbox is None:
            return
        try:
            depth, age = _outbox()
        except Exception:  # a scrape during an outage still shows the rest
            current_app.logger.warning("metrics: the outbox backlog could not be read")
            return
        yield GaugeMetricFamily("portal_outbox_depth", "Messages due in the outbox.", value=depth)
        yield GaugeMetricFamily(
            "portal_outbox_oldest_age_seconds",
            "Seconds the most overdue message has waited past its due time (growing: no worker sends).",
            value=age or 0,
        )


# -- the endpoint ----------------------------------------------------------------


def allowed() -> int | None:
    """None when this client may read the metrics, else the status to refuse with."""
    token = current_app.config["METRICS_TOKEN"]
    if token:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        return None if scheme.lower() == "bearer" and same(sent.strip(), token) else 401
    try:
        return None if ipaddress.ip_address(request.remote_addr or "").is_loopback else 403
    except ValueError:
        return 403


def exposition() -> bytes:
    """Every worker's counts (multiprocess mode) or this process's, and the outbox."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        body = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(OutboxCollector())
    return body + generate_latest(extra)


@bp.get("/metrics")
@limiter.limit(
    lambda: current_app.config["RATELIMIT_CLIENT_AUTH"],
    scope="metrics-auth",
    deduct_when=lambda response: response.status_code == 401,
)
def metrics() -> Response:
    if refused := allowed():
        headers = {"WWW-Authenticate": "Bearer"} if refused == 401 else {}
        return Response("Not allowed.\n", status=refused, mimetype="text/plain", headers=headers)
    return Response(exposition(), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
    app.before_request(_begin)
    app.after_request(_end)
