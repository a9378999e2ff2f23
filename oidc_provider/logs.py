"""Log lines: text or JSON (`LOG_FORMAT`), each stamped with the id of the
request it belongs to, and one access line per request.

The access line names the URL rule (`/activate/<token>`), never the path or
the query string, and no form body is ever logged: emailed links, codes and
tokens travel in those. The request id comes from a trusted proxy's
`X-Request-ID`, else it is new; it is sent back in the same header so that a
person's report, the proxy's log and these lines meet.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, g, request

REQUEST_ID = ContextVar("request_id", default="-")
# what a proxy may send as an id: short, no spaces or quotes (it is echoed back and logged)
_PROXY_ID = re.compile(r"[A-Za-z0-9._:@=+/-]{1,128}")
# fields a line may carry besides the message (the access line sets them)
FIELDS = ("method", "endpoint", "path", "status", "duration_ms", "error")
access_log = logging.getLogger("oidc_provider.access")


class RequestContext(logging.Filter):
    """Stamps every record with the current request's id ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and
    the access fields when present. A traceback, if any, stays on the line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", REQUEST_ID.get()),
        }
        for field in FIELDS:
            if (value := getattr(record, field, None)) is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def formatter(kind: str) -> logging.Formatter:
    """The formatter for `LOG_FORMAT` (text or json)."""
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT)


def handler(kind: str, stream: Any = None) -> logging.Handler:
    """A handler writing `kind` lines with request ids to `stream` (stderr)."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.addFilter(RequestContext())
    out.setFormatter(formatter(kind))
    return out


def granian_config(kind: str) -> dict[str, Any]:
    """A logging dictConfig for the server's own lines (start-up, workers), in the same format."""
    fmt = {"()": "oidc_provider.logs.JsonFormatter"} if kind == "json" else {"format": TEXT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": "oidc_provider.logs.RequestContext"}},
        "formatters": {"portal": fmt},
        "handlers": {
            "portal": {
                "class": "logging.StreamHandler",
                "formatter": "portal",
                "filters": ["request"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "_granian": {"handlers": ["portal"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["portal"], "level": "WARNING", "propagate": False},
        },
    }


class _NoWerkzeugAccess(logging.Filter):
    """`flask run`'s own request lines carry the full URL (tokens, codes): the
    access line below replaces them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or " - - [" not in str(record.msg)


def init_app(app: Flask) -> None:
    """Send the process's log lines through one handler of the configured
    format (replacing the one an earlier app of this process installed), and
    log each request once."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "portal"]:
        root.removeHandler(old)
    installed = handler(app.config["LOG_FORMAT"])
    installed.set_name("portal")
    root.addHandler(installed)
    # our INFO lines (the access line, mail sent to the console); libraries keep
    # the root's WARNING, except the debugging server's "Running on …"
    logging.getLogger("oidc_provider").setLevel(logging.INFO)
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.setLevel(logging.INFO)
    if not any(isinstance(f, _NoWerkzeugAccess) for f in werkzeug.filters):
        werkzeug.addFilter(_NoWerkzeugAccess())
    app.before_request(_begin)
    app.after_request(_end)
    app.teardown_request(_forget)


def request_id() -> str:
    """The id of the current request: a trusted proxy's, else a new random one."""
    return choose_request_id(request.headers.get("X-Request-ID", ""))


def choose_request_id(sent: str) -> str:
    """A trusted proxy's `X-Request-ID` (`sent`), else a new random one."""
    if current_app.config["TRUSTED_PROXIES"] and _PROXY_ID.fullmatch(sent):
        return sent
    # unique, not secret (it is sent back and logged): the random module's
    # generator, reseeded in each forked worker, costs a fraction of os.urandom
    return f"{random.getrandbits(128):032x}"


def _begin() -> None:
    g.request_started = time.perf_counter()
    g.request_id_token = REQUEST_ID.set(request_id())


def _forget(_: BaseException | None = None) -> None:
    """A thread serves many requests: the next line outside one has no id."""
    if (token := g.pop("request_id_token", None)) is not None:
        REQUEST_ID.reset(token)


def rule() -> str | None:
    """The URL rule the request matched (`/activate/<token>`): what a log may name."""
    return request.url_rule.rule if request.url_rule is not None else None


def _end(response: Response) -> Response:
    response.headers["X-Request-ID"] = REQUEST_ID.get()
    started = g.get("request_started")
    duration = round((time.perf_counter() - started) * 1000, 2) if started else None
    # a dependency that was down is said once, here
    access(
        request.method,
        request.endpoint,
        rule() or "(no route)",
        response.status_code,
        duration,
        g.get("unavailable"),
    )
    return response


def access(
    method: str,
    endpoint: str | None,
    path: str,
    status: int,
    duration: float | None,
    error: str | None = None,
) -> None:
    """The one access line of a request (its route, never its URL: paths and
    queries carry tokens)."""
    access_log.log(
        logging.WARNING if error or status >= 500 else logging.INFO,
        "%s %s %s %sms%s",
        method,
        path,
        status,
        duration,
        f" ({error})" if error else "",
        extra={
            "method": method,
            "endpoint": endpoint,
            "path": path,
            "status": status,
            "duration_ms": duration,
            "error": error,
        },
    )
