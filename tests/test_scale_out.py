"""Two instances of the portal behind a round-robin proxy, as compose.yaml runs
them, on one PostgreSQL and one Redis, with the outbox worker as its own
process and a real SMTP server (the reliability review of 2026-12-03, turned
into a test): every request of a person's whole journey goes to the other
instance than the one before; then Redis, PostgreSQL, the mail server, an
app's back-channel endpoint and one instance fail in turn, and each failure is
answered as the review says it must be.

Run alone with `pytest -m deployment tests/test_scale_out.py`; `make test` runs it."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt as pyjwt
import pyotp
import pytest
import requests
import yaml
from cluster import (
    BIN,
    HOST,
    Deployment,
    Instance,
    LogoutReceiver,
    MailServer,
    Process,
    RoundRobinProxy,
    running,
    service_command,
    service_environment,
)
from mailserver import free_port, links
from pgserver import BIN as PG_BIN
from pgserver import stoppable_cluster
from redisserver import BINARY as REDIS_BINARY
from redisserver import RedisServer
from rp import forms
from sqlalchemy import create_engine, text

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.skipif(
        PG_BIN is None or REDIS_BINARY is None, reason="needs Debian's postgresql and redis-server"
    ),
]

LOGOUT_TOKEN_LIFETIME = 3  # seconds: the receiver stays down for longer
LOGIN_LIMIT = 5  # failed sign-ins per minute and client address
SECRETS = {"rel1": secrets.token_urlsafe(32), "rel2": secrets.token_urlsafe(32)}
UNAVAILABLE = "The service is temporarily unavailable. Please try again in a minute."
TOTP_STEP = 30
# the caller's own settings never reach the instances: only compose.yaml's and the test's
SETTING_PREFIXES = (
    "FLASK_",
    "OIDC_",
    "WEB_",
    "MAIL_",
    "SMS_",
    "RATELIMIT_",
    "OUTBOX_",
    "PROMETHEUS_",
    "LOG_",
)


def say(capsys, line: str) -> None:
    """Measurements go to the terminal, also when the test passes."""
    with capsys.disabled():
        print(f"\n[scale-out] {line}", end="")


# -- what the apps and the people are --------------------------------------------------


def registrations(rp_port: int, receiver: LogoutReceiver) -> list[dict]:
    """Two first-party apps like the review's rel1 and rel2."""
    return [
        {
            "client_id": client_id,
            "name": client_id.upper(),
            "redirect_uris": [f"http://{HOST}:{rp_port}/{client_id}/callback"],
            "post_logout_redirect_uris": [f"http://{HOST}:{rp_port}/{client_id}/"],
            "backchannel_logout_uri": receiver.url(f"/bc/{client_id}"),
            "token_endpoint_auth_method": "client_secret_basic",
            "client_secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
            "scopes": ["openid", "profile", "email", "offline_access"],
            "first_party": True,
            "require_pkce": True,
            "refresh_tokens": "always",
        }
        for client_id, secret in SECRETS.items()
    ]


class Authenticator:
    """An authenticator app: each code is for a later 30-second step than the
    last one handed out (the portal refuses a step twice), within the one step
    of drift either way the portal accepts."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step = -1

    def code(self) -> str:
        now = time.time()
        current = int(now // TOTP_STEP)
        earliest = current - 1 if TOTP_STEP - now % TOTP_STEP > 5 else current
        step = max(earliest, self.last_step + 1)
        assert step <= current + 1, "more codes within a minute than the test plans for"
        self.last_step = step
        return self.totp.at(step * TOTP_STEP)


@dataclass
class Person:
    name: str
    email: str
    password: str = field(default_factory=lambda: f"plum orchard {secrets.token_hex(3)} lantern")
    authenticator: Authenticator | None = None


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def params(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))


class Browser:
    """One person's browser: one cookie jar for the portal's address (the proxy),
    redirects followed by hand so that each request is seen."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def absolute(self, url: str) -> str:
        return url if url.startswith("http") else self.base + url

    def get(self, url: str, **kw) -> requests.Response:
        return self.session.get(self.absolute(url), allow_redirects=False, timeout=30, **kw)

    def submit(self, page: requests.Response, fields: dict[str, str], **kw) -> requests.Response:
        """Fill the page's form that has a CSRF token and the fields to fill, and
        post it to its action (a page also has forms of other buttons: Cancel, Send a new code)."""
        [form] = [
            f for f in forms(page.content) if {"csrf_token", *fields} <= {name for name, _ in f["fields"]}
        ]
        action = form.get("action") or page.url
        data = {**dict(form["fields"]), **fields}
        return self.session.post(self.absolute(action), data=data, allow_redirects=False, timeout=30, **kw)

    def follow(self, response: requests.Response, stop_at: str) -> requests.Response:
        """Follow the portal's redirects until one leaves for `stop_at` (the app)."""
        for _ in range(10):
            location = response.headers.get("Location", "")
            if response.status_code not in (301, 302, 303) or location.startswith(stop_at):
                return response
            response = self.get(location)
        raise AssertionError(f"too many redirects, last {response.url}")


class App:
    """A relying party: its server's calls to the portal (token, userinfo,
    introspection) and how it starts a sign-in."""

    def __init__(self, client_id: str, base: str, rp_port: int) -> None:
        self.client_id = client_id
        self.base = base
        self.callback = f"http://{HOST}:{rp_port}/{client_id}/callback"
        self.home = f"http://{HOST}:{rp_port}/{client_id}/"
        self.server = requests.Session()
        self.verifier = ""

    def authorize(self, browser: Browser) -> requests.Response:
        self.verifier, challenge = pkce()
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.callback,
            "scope": "openid profile email offline_access",
            "state": "st-" + secrets.token_hex(4),
            "nonce": "n-" + secrets.token_hex(4),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return browser.get("/authorize?" + urlencode(query))

    def code(self, response: requests.Response) -> str:
        assert response.status_code == 302, (response.status_code, response.text[:300])
        assert response.headers["Location"].startswith(self.callback), response.headers["Location"]
        answer = params(response.headers["Location"])
        assert answer["iss"] == self.base
        return answer["code"]

    def post(self, path: str, data: dict) -> requests.Response:
        return self.server.post(
            self.base + path, data=data, auth=(self.client_id, SECRETS[self.client_id]), timeout=30
        )

    def token(self, code: str) -> requests.Response:
        return self.post(
            "/token",
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.callback,
                "code_verifier": self.verifier,
            },
        )

    def refresh(self, refresh_token: str) -> requests.Response:
        return self.post("/token", {"grant_type": "refresh_token", "refresh_token": refresh_token})

    def introspect(self, token: str) -> dict:
        response = self.post("/introspect", {"token": token})
        assert response.status_code == 200, response.text
        return response.json()

    def userinfo(self, access_token: str, how: str = "get") -> requests.Response:
        if how == "post":
            return self.server.post(f"{self.base}/userinfo", data={"access_token": access_token}, timeout=30)
        return self.server.get(
            f"{self.base}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=30
        )


def verified(token: str, audience: str, issuer: str, jwks_url: str, at: float | None = None) -> dict:
    """A JWT checked with PyJWT against one instance's published keys, valid at `at` (now)."""
    keys = requests.get(jwks_url, timeout=10).json()["keys"]
    header = pyjwt.get_unverified_header(token)
    [jwk] = [k for k in keys if k["kid"] == header["kid"]]
    claims = pyjwt.decode(
        token,
        pyjwt.PyJWK(jwk).key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=issuer,
        options={"verify_exp": False, "verify_iat": False},
    )
    moment = time.time() if at is None else at
    assert claims["exp"] > moment, f"expired at {claims['exp']}, checked at {moment:.1f}"
    return claims


# -- the steps of the journey ---------------------------------------------------------


def register(browser: Browser, person: Person) -> tuple[requests.Response, float]:
    """Fill in the registration form; the answer and how long it took."""
    page = browser.get("/register")
    started = time.perf_counter()
    answer = browser.submit(
        page,
        {"name": person.name, "email": person.email, "password": person.password, "confirm": person.password},
    )
    took = time.perf_counter() - started
    assert answer.status_code == 303, (answer.status_code, answer.text[:500])
    return answer, took


def activation_link(mail: MailServer, person: Person, count: int, timeout: float = 30) -> str:
    received = mail.inbox.wait_for(count, timeout)
    mine = [m for m in received if m["To"] == person.email]
    assert mine, f"no mail to {person.email}; got {[m['To'] for m in received]}"
    [link] = [u for u in links(mine[-1]) if "/activate/" in u]
    return link


def sign_in(browser: Browser, app: App, person: Person, enrol: bool = False) -> requests.Response:
    """From the app's authorization request to the code: password, then the
    code (or, the first time, setting up the authenticator app)."""
    response = app.authorize(browser)
    assert urlsplit(response.headers["Location"]).path == "/login", response.headers
    page = browser.get(response.headers["Location"])
    response = browser.submit(page, {"email": person.email, "password": person.password})
    assert response.status_code == 302, (response.status_code, response.text[:500])
    if enrol:
        assert urlsplit(response.headers["Location"]).path == "/mfa/setup"
        page = browser.get("/mfa/setup/authenticator")
        secret = re.search(r'id="secret">([A-Z2-7 ]+)<', page.text).group(1).replace(" ", "")
        person.authenticator = Authenticator(secret)
        response = browser.submit(page, {"code": person.authenticator.code()})
        assert urlsplit(response.headers["Location"]).path == "/login/enrolled", response.text[:500]
        response = browser.get(response.headers["Location"])
        welcome = browser.get(response.headers["Location"])
        assert "Your account is protected" in welcome.text
        response = browser.get(params(response.headers["Location"])["next"])
    else:
        return finish_sign_in(browser, app, person, response)
    return browser.follow(response, app.callback)


def finish_sign_in(browser: Browser, app: App, person: Person, after_password: requests.Response):
    assert urlsplit(after_password.headers["Location"]).path == "/login/code", after_password.headers
    page = browser.get("/login/code")
    response = browser.submit(page, {"code": person.authenticator.code(), "trust": ""})
    assert response.status_code == 302, (response.status_code, response.text[:500])
    return browser.follow(response, app.callback)


# -- the deployment ---------------------------------------------------------------------


@pytest.fixture
def deployment(tmp_path):
    """PostgreSQL, Redis, SMTP and a back-channel receiver; two instances with
    the compose file's command (each migrates under the lock, then serves with
    two worker processes), the worker with its command, and the proxy."""
    with ExitStack() as stack:
        cluster = stack.enter_context(stoppable_cluster())
        redis = RedisServer(tmp_path)
        redis.start()
        stack.callback(redis.stop)
        mail = MailServer(free_port())
        mail.open()
        stack.callback(mail.close)
        receiver = LogoutReceiver(free_port())
        receiver.start()
        stack.callback(receiver.stop)
        rp_port = free_port()
        clients = tmp_path / "clients.yaml"
        clients.write_text(yaml.safe_dump({"clients": registrations(rp_port, receiver)}))

        instances = [Instance(name, [], {}, tmp_path / f"{name}.log", port=free_port()) for name in "ab"]
        proxy = stack.enter_context(RoundRobinProxy(instances))
        compose_variables = {"POSTGRES_PASSWORD": "not-used-here"}
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)},
            **service_environment("provider-1", compose_variables),
            # the addresses of this machine's services instead of the compose network's
            "PATH": f"{BIN}:/usr/bin:/bin",
            "PYTHONUNBUFFERED": "1",
            "WEB_HOST": HOST,
            "OIDC_ISSUER": proxy.url,
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": cluster.url,
            "RATELIMIT_STORAGE_URI": redis.url,
            "MAIL_SERVER": HOST,
            "MAIL_PORT": str(mail.port),
            "OIDC_CLIENTS_FILE": str(clients),
            "OIDC_KEYS_DIR": str(tmp_path / "keys"),
            "OUTBOX_DIR": str(tmp_path / "outbox"),
            # faults within a test's minutes: short timeouts and backoff
            "MAIL_TIMEOUT": "3",
            "BACKCHANNEL_TIMEOUT": "2",
            "SMS_GATEWAY_TIMEOUT": "3",
            "OUTBOX_LEASE": "30",
            "OUTBOX_BACKOFF_BASE": "1",
            "OUTBOX_BACKOFF_MAX": "2",
            "DELIVERY_RETRIES": "200",
            "BACKCHANNEL_RETRIES": "200",
            "LOGOUT_TOKEN_LIFETIME": str(LOGOUT_TOKEN_LIFETIME),
            "RATELIMIT_LOGIN": f"{LOGIN_LIMIT} per minute",
            "RATELIMIT_EMAIL": "100 per hour",
        }
        assert service_command("provider-2") == service_command("provider-1")
        assert service_environment("provider-2", compose_variables) == service_environment(
            "provider-1", compose_variables
        )
        for instance in instances:
            instance.command = service_command("provider-1")
            instance.env = {**env, "WEB_PORT": str(instance.port)}
            instance.workers = int(env["WEB_WORKERS"])
        worker = Process("worker", service_command("worker"), env, tmp_path / "worker.log")
        stack.enter_context(running(*instances, worker))
        for instance in instances:
            instance.wait_ready()
        deployment = Deployment(instances, worker, proxy, receiver, mail, env)
        deployment.extra.update(cluster=cluster, redis=redis, rp_port=rp_port)
        engine = create_engine(cluster.url, pool_pre_ping=True)
        deployment.extra["engine"] = engine
        stack.callback(engine.dispose)
        yield deployment


def rows(deployment: Deployment, sql: str, **bind) -> list:
    with deployment.extra["engine"].connect() as connection:
        return list(connection.execute(text(sql), bind))


def stored_ids(deployment: Deployment) -> dict[str, set[int]]:
    """The ids of what people and apps have: accounts, methods, sessions, codes, tokens, messages."""
    tables = ("user", "mfa_method", "sso_session", "authorization_code", "token", "outbox_message")
    return {t: {r[0] for r in rows(deployment, f'SELECT id FROM "{t}"')} for t in tables}


# -- the test ---------------------------------------------------------------------------


@dataclass
class Scenario:
    """The deployment, the two apps, the person, and what one phase leaves for a later one."""

    d: Deployment
    rel1: App
    rel2: App
    ann: Person
    report: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    rotated: dict = field(default_factory=dict)
    browser2: Browser | None = None
    tokens4: dict = field(default_factory=dict)
    sid4: str = ""
    logged_out_at: float = 0.0
    delivered_before: int = 0
    browser3: Browser | None = None
    tokens5: dict = field(default_factory=dict)


def test_two_instances_serve_every_step_alternately_and_survive_each_fault(deployment, capsys):
    d = deployment
    rp_port = d.extra["rp_port"]
    s = Scenario(
        d,
        App("rel1", d.url, rp_port),
        App("rel2", d.url, rp_port),
        Person("Ann Example", f"ann.{secrets.token_hex(3)}@example.com"),
        lambda line: say(capsys, line),
    )
    journey_alternates_every_request(s)
    kill_one_instance_mid_sign_in(s)
    sign_out_while_the_app_is_away(s)
    redis_away(s)
    postgresql_away(s)
    mail_server_closed_then_hanging(s)
    logout_delivered_after_the_token_lifetime(s)
    the_worker_sent_everything_and_no_failure_left_a_traceback(s)
    s.report(f"total {time.monotonic() - s.started:.1f} s")


def journey_alternates_every_request(s: Scenario) -> None:
    """The whole journey, every request on the other instance than the one before:
    register, activate, enrol, the code, the ID token against each instance's JWKS, SSO,
    refresh rotation, userinfo, introspection, RP-initiated logout and back-channel
    logout (review experiment 1)."""
    d, rel1, rel2, ann = s.d, s.rel1, s.rel2, s.ann
    first = len(d.proxy.served)
    browser = Browser(d.url)
    register(browser, ann)
    activated = browser.get(activation_link(d.mail, ann, 1))
    assert "Your account is active" in activated.text
    tokens1 = rel1.token(rel1.code(sign_in(browser, rel1, ann, enrol=True))).json()
    for instance in d.instances:  # each instance publishes the keys that verify it
        claims1 = verified(tokens1["id_token"], "rel1", d.url, f"{instance.url}/jwks.json")
    assert claims1["amr"] == ["pwd", "otp", "mfa"] and claims1["acr"] == "urn:login-portal:acr:mfa"
    sso = rel2.authorize(browser)  # single sign-on: a code without a password
    tokens2 = rel2.token(rel2.code(sso)).json()
    claims2 = verified(tokens2["id_token"], "rel2", d.url, f"{d.instances[1].url}/jwks.json")
    assert claims2["sid"] == claims1["sid"] and claims2["sub"] == claims1["sub"]
    rt1 = tokens1["refresh_token"]
    rt2 = rel1.refresh(rt1).json()["refresh_token"]
    rotated = s.rotated = rel1.refresh(rt2).json()
    assert rotated["refresh_token"] not in (rt1, rt2)
    assert (
        verified(rotated["id_token"], "rel1", d.url, f"{d.instances[0].url}/jwks.json")["sid"]
        == claims1["sid"]
    )
    assert (
        rel1.introspect(rt1)["active"] is False
        and rel1.introspect(rotated["refresh_token"])["active"] is True
    )
    for how in ("get", "post"):
        info = rel1.userinfo(rotated["access_token"], how)
        assert info.status_code == 200 and info.json()["email"] == ann.email
    assert rel1.introspect(rotated["access_token"])["active"] is True
    assert rel2.introspect(rotated["access_token"])["active"] is False  # not rel2's token
    before = len(d.receiver.received)
    logout = browser.get(
        "/logout?"
        + urlencode(
            {"id_token_hint": rotated["id_token"], "post_logout_redirect_uri": rel1.home, "state": "st-1"}
        )
    )
    assert logout.status_code == 302 and logout.headers["Location"] == rel1.home + "?state=st-1"
    delivered = d.receiver.wait_for({"/bc/rel1", "/bc/rel2"}, after=before, timeout=15)
    assert {"/bc/rel1", "/bc/rel2"} <= {x.path for x in delivered}, delivered
    for delivery in delivered:
        audience = delivery.path.rsplit("/", 1)[1]
        logout_claims = verified(
            delivery.logout_token, audience, d.url, f"{d.instances[0].url}/jwks.json", delivery.at
        )
        assert logout_claims["sid"] == claims1["sid"] and "nonce" not in logout_claims
        assert "http://schemas.openid.net/event/backchannel-logout" in logout_claims["events"]
    assert urlsplit(rel1.authorize(browser).headers["Location"]).path == "/login"  # signed out
    journey = d.proxy.served[first:]
    assert {x.instance for x in journey} == {"a", "b"} and not d.proxy.skipped
    assert all(x.instance != y.instance for x, y in zip(journey, journey[1:], strict=False)), [
        (x.instance, x.path) for x in journey
    ]
    assert all(x.status < 500 for x in journey), [x for x in journey if x.status >= 500]
    s.report(
        f"journey: {len(journey)} requests alternating a/b, none failed ({time.monotonic() - s.started:.1f} s)",
    )


def kill_one_instance_mid_sign_in(s: Scenario) -> None:
    """kill -9 of the instance that took the password, before the code: the other goes
    on, and nothing stored meanwhile is lost when the killed one is back (experiment
    5a)."""
    d, rel1, rel2, ann = s.d, s.rel1, s.rel2, s.ann
    kill_started = time.monotonic()
    browser2 = s.browser2 = Browser(d.url)
    response = rel1.authorize(browser2)
    page = browser2.get(response.headers["Location"])
    after_password = browser2.submit(page, {"email": ann.email, "password": ann.password})
    victim = d.instance(after_password.headers["X-Served-By"])
    survivor = next(i for i in d.instances if i is not victim)
    victim.kill()
    mark = len(d.proxy.served)
    code = rel1.code(finish_sign_in(browser2, rel1, ann, after_password))
    tokens3 = rel1.token(code).json()
    tokens3 = rel1.refresh(tokens3["refresh_token"]).json()
    assert rel1.userinfo(tokens3["access_token"]).json()["email"] == ann.email
    tokens4 = s.tokens4 = rel2.token(rel2.code(rel2.authorize(browser2))).json()
    s.sid4 = verified(tokens4["id_token"], "rel2", d.url, f"{survivor.url}/jwks.json")["sid"]
    while_down = d.proxy.served[mark:]
    assert {x.instance for x in while_down} == {survivor.name} and victim.name in d.proxy.skipped
    assert all(x.status < 500 for x in while_down), while_down
    victim.start()  # the same command: `db upgrade` finds nothing to do, then it serves
    victim.wait_ready()
    mark = len(d.proxy.served)
    tokens3 = rel1.refresh(tokens3["refresh_token"]).json()  # what was stored meanwhile works on both
    assert rel1.introspect(tokens3["access_token"])["active"] is True
    assert rel1.introspect(s.rotated["refresh_token"])["active"] is True  # offline_access outlived the logout
    assert {x.instance for x in d.proxy.served[mark:]} == {"a", "b"}
    s.report(
        f"kill -9 of {victim.name}: {len(while_down)} requests on {survivor.name} alone, "
        f"{victim.name} back in {time.monotonic() - kill_started:.1f} s",
    )


def sign_out_while_the_app_is_away(s: Scenario) -> None:
    """The apps' back-channel endpoint goes away; browser2 signs out of both apps
    meanwhile (experiment 5d)."""
    d, rel2 = s.d, s.rel2
    d.receiver.stop()
    s.logged_out_at = time.time()
    logout = s.browser2.get(
        "/logout?"
        + urlencode({"id_token_hint": s.tokens4["id_token"], "post_logout_redirect_uri": rel2.home})
    )
    assert logout.status_code == 302
    s.delivered_before = len(d.receiver.received)


def redis_away(s: Scenario) -> None:
    """Redis stops: sign-in and /token answer, readiness says degraded; when it is back,
    the limits are shared again without a restart (defects 2, 3 and 13)."""
    d, rel1, ann = s.d, s.rel1, s.ann
    redis = d.extra["redis"]
    redis.stop()
    browser3 = s.browser3 = Browser(d.url)
    response = rel1.authorize(browser3)
    page = browser3.get(response.headers["Location"])
    refused = browser3.submit(page, {"email": ann.email, "password": "not the password at all"})
    assert refused.status_code == 401
    after_password = browser3.submit(page, {"email": ann.email, "password": ann.password})
    tokens5 = rel1.token(rel1.code(finish_sign_in(browser3, rel1, ann, after_password)))
    assert tokens5.status_code == 200
    tokens5 = s.tokens5 = tokens5.json()
    bad_secret = requests.post(
        f"{d.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        auth=("rel1", "wrong"),
        timeout=30,
    )
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    for instance in d.instances:
        ready = requests.get(f"{instance.url}/health/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
        assert ready.json()["checks"]["rate_limits"]["status"] == "degraded"
    redis.start()
    for instance in d.instances:
        assert requests.get(f"{instance.url}/health/ready", timeout=10).json()["checks"]["rate_limits"] == {
            "status": "ok",
            "detail": "redis",
        }
    rounds, resumed_at = limit_resumes(d)
    s.report(f"Redis back: limits shared again after {rounds} round(s), {resumed_at:.1f} s, no restart")


def postgresql_away(s: Scenario) -> None:
    """PostgreSQL stops: 503 + Retry-After with a page for people and JSON for apps,
    readiness 503 and liveness 200, one log line per failed request; when it is back,
    everything answers and nothing is lost (experiment 5b, defect 12)."""
    d, rel1, rel2, ann = s.d, s.rel1, s.rel2, s.ann
    sso_code = rel2.code(rel2.authorize(s.browser3))
    stored = stored_ids(d)
    offsets = {i.name: i.log_size for i in d.instances} | {"worker": d.worker.log_size}
    cluster = d.extra["cluster"]
    cluster.stop()
    pg_stopped = time.monotonic()
    answers = []
    page = s.browser3.get("/account")
    assert page.status_code == 503 and 59 <= int(page.headers["Retry-After"]) <= 60
    assert "Temporarily unavailable" in page.text and UNAVAILABLE in page.text
    assert "Internal Server Error" not in page.text and page.headers["Content-Type"].startswith("text/html")
    answers.append(page)
    for response in (rel2.token(sso_code), rel1.userinfo(s.tokens5["access_token"])):
        assert response.status_code == 503 and 59 <= int(response.headers["Retry-After"]) <= 60
        assert response.json() == {"error": "temporarily_unavailable", "error_description": UNAVAILABLE}
        answers.append(response)
    for instance in d.instances:
        ready = requests.get(f"{instance.url}/health/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["database"]["status"] == "down"
        assert requests.get(f"{instance.url}/health/live", timeout=10).status_code == 200
    for answer in answers:  # one line per failed request, naming the cause
        instance = d.instance(answer.headers["X-Served-By"])
        [line] = instance.access_lines(answer.headers["X-Request-ID"], offsets[instance.name])
        assert line["status"] == 503 and "database unavailable" in line["error"], line
    cluster.start()
    pg_down = time.monotonic() - pg_stopped
    assert s.browser3.get("/account").status_code == 200  # no restart: the pools reconnect
    assert rel2.token(sso_code).status_code == 200  # the code was not spent by the failed try
    assert rel1.userinfo(s.tokens5["access_token"]).json()["email"] == ann.email
    for instance in d.instances:
        assert requests.get(f"{instance.url}/health/ready", timeout=10).status_code == 200
    after = stored_ids(d)
    assert all(stored[t] <= after[t] for t in stored), "rows were lost"
    for process in [*d.instances, d.worker]:
        logged = process.lines(offsets[process.name])
        assert not [line for line in logged if "Traceback" in line], "\n".join(logged[-40:])
    s.report(f"PostgreSQL down {pg_down:.1f} s: 503 + Retry-After, one line each, nothing lost")


def mail_server_closed_then_hanging(s: Scenario) -> None:
    """The mail server is closed, then hangs: registrations answer at once and tell the
    truth; the mail arrives once it is back (experiments 5c and 5c-2, defects 7 and 8)."""
    d = s.d
    d.mail.close()
    ben, cleo = (Person(n, f"{n.lower()}.{secrets.token_hex(3)}@example.com") for n in ("Ben", "Cleo"))
    ben_browser = Browser(d.url)
    answer, ben_took = register(ben_browser, ben)
    ben_sent = time.monotonic()
    assert ben_took < 1.0, f"registration took {ben_took:.2f} s with the mail server closed"
    [[ben_message]] = rows(d, "SELECT max(id) FROM outbox_message WHERE kind = 'mail'")
    attempt = "SELECT attempts, last_error FROM outbox_message WHERE id = :id"
    tried = wait_until(lambda: rows(d, attempt, id=ben_message)[0], lambda row: row[0] >= 1)
    assert "refused" in tried[1].lower(), tried  # the worker tried: the page now says so
    shown = ben_browser.get(answer.headers["Location"]).text
    assert f"We could not send it to <strong>{ben.email}</strong>; try again" in shown, shown
    d.mail.hang()
    cleo_browser = Browser(d.url)
    answer, cleo_took = register(cleo_browser, cleo)
    cleo_sent = time.monotonic()
    assert cleo_took < 1.0, f"registration took {cleo_took:.2f} s with the mail server hanging"
    shown = cleo_browser.get(answer.headers["Location"]).text  # within MAIL_TIMEOUT: still on its way
    assert f"We're sending an email to <strong>{cleo.email}</strong>" in shown, shown
    assert "We have sent" not in shown
    wait_until(lambda: len(d.mail.held), lambda n: n >= 1)  # the worker is stuck on the server
    d.mail.open()
    back = time.monotonic()
    wanted = {ben.email, cleo.email}
    with d.mail.inbox.arrived:
        d.mail.inbox.arrived.wait_for(lambda: wanted <= {m["To"] for m in d.mail.inbox.received}, 60)
    arrived = time.monotonic()
    assert wanted <= {m["To"] for m in d.mail.inbox.received}, "the queued mail never arrived"
    assert "Your account is active" in cleo_browser.get(activation_link(d.mail, cleo, 0)).text
    s.report(
        f"mail: registrations answered in {ben_took:.2f} s (closed) and {cleo_took:.2f} s (hanging); "
        f"the mail arrived {arrived - ben_sent:.1f} s and {arrived - cleo_sent:.1f} s "
        f"after the registration, {arrived - back:.1f} s after the server was back",
    )


def logout_delivered_after_the_token_lifetime(s: Scenario) -> None:
    """The back-channel endpoint returns after longer than a logout token lives: it
    receives tokens valid when they arrive (defects 5 and 6)."""
    d = s.d
    d.receiver.start()
    receiver_back = time.time()
    assert receiver_back - s.logged_out_at > LOGOUT_TOKEN_LIFETIME
    late = d.receiver.wait_for({"/bc/rel1", "/bc/rel2"}, after=s.delivered_before, timeout=30)
    assert {"/bc/rel1", "/bc/rel2"} <= {x.path for x in late}, late
    for delivery in late:
        audience = delivery.path.rsplit("/", 1)[1]
        claims = verified(
            delivery.logout_token, audience, d.url, f"{d.instances[1].url}/jwks.json", delivery.at
        )
        assert claims["sid"] == s.sid4
        # minted for this attempt: one minted at the logout would have expired
        assert claims["exp"] > s.logged_out_at + LOGOUT_TOKEN_LIFETIME
    s.report(
        f"back-channel: receiver down {receiver_back - s.logged_out_at:.1f} s "
        f"(token lifetime {LOGOUT_TOKEN_LIFETIME} s); fresh tokens delivered "
        f"{max(x.at for x in late) - receiver_back:.1f} s after it returned",
    )


def the_worker_sent_everything_and_no_failure_left_a_traceback(s: Scenario) -> None:
    """The worker process sent every message, the instances only queued them
    (OUTBOX_WORKER=external); every failure above was logged in one line."""
    assert "sent at attempt" in "\n".join(s.d.worker.lines())
    assert not [line for i in s.d.instances for line in i.lines() if "sent at attempt" in line]
    for process in [*s.d.instances, s.d.worker]:
        logged = process.lines()
        assert not [line for line in logged if "Traceback" in line], process.name


def wait_until(read, done, timeout: float = 30):
    """Read until `done(value)` (a bounded poll of another process's work)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout} s"
        time.sleep(0.1)


def limit_resumes(d: Deployment) -> tuple[int, float]:
    """After Redis returns: a fresh client address gets exactly LOGIN_LIMIT wrong
    passwords, counted across both instances (four processes), then 429. Each
    process goes back to Redis on a request a few seconds after it returned (in
    memory it would count alone: four times as many). Rounds until it holds."""
    back = time.monotonic()
    for round_ in range(1, 60):
        address = f"198.51.100.{round_}"  # the client address a trusted proxy reports
        session = requests.Session()
        page = session.get(f"{d.instances[0].url}/login", timeout=10)
        [form] = [f for f in forms(page.content) if "csrf_token" in dict(f["fields"])]
        statuses = []
        for n in range(LOGIN_LIMIT + 1):
            instance = d.instances[n % 2]
            data = {
                **dict(form["fields"]),
                "email": f"nobody.{secrets.token_hex(4)}@example.com",
                "password": "wrong password 12345",
            }
            statuses.append(
                session.post(
                    f"{instance.url}/login", data=data, headers={"X-Forwarded-For": address}, timeout=10
                ).status_code
            )
        assert set(statuses) <= {401, 429}, statuses  # never a 500
        if statuses == [401] * LOGIN_LIMIT + [429]:
            return round_, time.monotonic() - back
        assert time.monotonic() - back < 90, "the rate limits did not go back to Redis"
    raise AssertionError("the rate limits did not go back to Redis")
