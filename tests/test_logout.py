"""Logout everywhere: RP-Initiated Logout 1.0 and Back-Channel Logout 1.0, as
the conformance suite's logout plans and a real app's receiver see them."""

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
from conftest import SECRETS, deliver
from conftest import test_clients as default_clients
from rp import RP, forms, make_user, query

from oidc_provider import audit
from oidc_provider.db import db
from oidc_provider.logout import EVENT
from oidc_provider.models import OutboxMessage, SsoSession, Token, TrustedComputer

STATE = '90-chars "#%&=?/\\ state ' + "x" * 66


class Receiver:
    """An app's back-channel logout endpoint on a loopback port. `tokens`: the
    logout tokens it accepted; `posts`: every one it was sent (path, token,
    answer, and the test clock's time then, when `clock` is set)."""

    def __init__(self) -> None:
        self.tokens: list[tuple[str, str]] = []  # (path, logout_token)
        self.posts: list[tuple[str, str, int, object]] = []
        self.clock = None
        self.fail_first: dict[str, int] = {}
        self.hold = threading.Event()
        self.hold.set()
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.hold.wait(10)
                token = parse_qs(body)["logout_token"][0]
                at = receiver.clock.now if receiver.clock else None
                if receiver.fail_first.get(self.path, 0) > 0:
                    receiver.fail_first[self.path] -= 1
                    receiver.posts.append((self.path, token, 503, at))
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.posts.append((self.path, token, 200, at))
                with receiver.got:
                    receiver.tokens.append((self.path, parse_qs(body)["logout_token"][0]))
                    receiver.got.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[str, str]]:
        with self.got:
            self.got.wait_for(lambda: len(self.tokens) >= count, timeout)
        return list(self.tokens)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.hold.set()
    r.server.shutdown()
    r.server.server_close()


def receiving_clients(receiver) -> list[dict]:
    """The test apps, with "client" and "client2" told of logouts at `receiver`."""
    clients = default_clients()
    for c in clients:
        if c["client_id"] in ("client", "client2"):
            c["backchannel_logout_uri"] = receiver.url(f"/{c['client_id']}/backchannel")
    return clients


@pytest.fixture
def logout_app(make_app, receiver):
    return make_app(clients=receiving_clients(receiver))


@pytest.fixture
def lrp(logout_app, clock):
    user = make_user(logout_app)
    clock.advance(seconds=30)
    return RP(logout_app, logout_app.test_client(), clock, user)


def sign_in_two_apps(lrp):
    first = lrp.token(lrp.login_code("client")).json
    second_code = lrp.code_from(
        lrp.authorize(client_id="client2", redirect_uri="https://rp.example.test/callback2")
    )
    second = lrp.token(
        second_code, client_id="client2", redirect_uri="https://rp.example.test/callback2"
    ).json
    return first, second


def verify_logout_token(app, token: str, audience: str) -> dict:
    header = pyjwt.get_unverified_header(token)
    jwks = app.test_client().get("/jwks.json").json
    [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert header["typ"] == "logout+jwt"
    return pyjwt.decode(
        token,
        pyjwt.PyJWK(jwk).key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=app.config["OIDC_ISSUER"],
        options={"verify_exp": False, "verify_iat": False},
    )


def test_logout_from_one_app_signs_out_of_every_app(logout_app, lrp, receiver, clock):
    first, second = sign_in_two_apps(lrp)
    id_claims = lrp.id_token(second["id_token"], "client2")
    response = lrp.browser.get(
        "/logout",
        query_string={
            "id_token_hint": second["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": STATE,
        },
    )
    assert response.status_code == 302
    assert response.location.startswith("https://rp.example.test/post_logout_redirect?")
    assert query(response.location) == {"state": STATE}

    deliver(logout_app)
    got = dict(receiver.wait_for(2))
    assert set(got) == {"/client/backchannel", "/client2/backchannel"}
    for path, audience in (("/client/backchannel", "client"), ("/client2/backchannel", "client2")):
        claims = verify_logout_token(logout_app, got[path], audience)
        assert claims["events"] == {EVENT: {}}
        assert claims["sid"] == id_claims["sid"] and claims["sub"] == id_claims["sub"]
        assert "nonce" not in claims and claims["jti"]
    with logout_app.app_context():
        assert db.session.query(SsoSession).filter(SsoSession.ended_at.is_(None)).count() == 0
        # refresh tokens of the session are revoked unless offline_access
        assert all(t.revoked_at is not None for t in db.session.query(Token).filter_by(offline=False))
    silent = lrp.authorize(prompt="none")
    assert query(silent.location)["error"] == "login_required"


def test_logout_removes_the_trusted_computer(logout_app, lrp):
    lrp.sign_in(lrp.authorize(), trust=True)
    tokens = lrp.token(lrp.code_from(lrp.authorize())).json
    response = lrp.browser.get("/logout", query_string={"id_token_hint": tokens["id_token"]})
    assert response.status_code == 200 and "You are signed out" in response.get_data(as_text=True)
    assert lrp.browser.get_cookie("portal_trusted") is None
    with logout_app.app_context():
        assert db.session.query(TrustedComputer).count() == 0


def test_a_slow_app_does_not_hold_the_logout_and_a_failing_one_is_retried(make_app, receiver, clock):
    """With the worker thread of a serving process: it posts while the apps
    hold their answers, and the logout page does not wait for them."""
    app = make_app(clients=receiving_clients(receiver), OUTBOX_WORKER="thread")
    lrp = RP(app, app.test_client(), clock, make_user(app))
    clock.advance(seconds=30)
    _, second = sign_in_two_apps(lrp)
    assert app.extensions["outbox_worker"].running  # started by the first request
    receiver.hold.clear()  # the apps do not answer yet
    receiver.fail_first["/client/backchannel"] = 1
    response = lrp.browser.get("/logout", query_string={"id_token_hint": second["id_token"]})
    assert response.status_code == 200  # answered while both apps are still silent
    assert receiver.tokens == []
    receiver.hold.set()
    assert [p for p, _ in receiver.wait_for(1)] == ["/client2/backchannel"]
    app.extensions["outbox_worker"].stop()  # finishes the attempts in hand
    with app.app_context():
        [failed] = db.session.scalars(db.select(OutboxMessage).filter_by(label="client")).all()
        assert failed.attempts == 1 and failed.status == "pending" and "503" in failed.last_error
    clock.advance(seconds=app.config["OUTBOX_BACKOFF_BASE"])
    deliver(app)
    assert sorted(p for p, _ in receiver.wait_for(2)) == ["/client/backchannel", "/client2/backchannel"]
    with app.app_context():
        failed = db.session.get(OutboxMessage, failed.id)
        assert (failed.status, failed.attempts, failed.last_error, failed.payload) == ("sent", 2, None, None)


def test_oidcc_rp_initiated_logout_bad_post_logout_redirect_uri(lrp):
    tokens = lrp.tokens()
    response = lrp.browser.get(
        "/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/elsewhere",
            "state": "s",
        },
    )
    assert response.status_code == 200 and "You are signed out" in response.get_data(as_text=True)


def test_oidcc_rp_initiated_logout_query_added_to_post_logout_redirect_uri(lrp):
    tokens = lrp.tokens()
    response = lrp.browser.get(
        "/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect?foo=bar",
        },
    )
    assert response.status_code == 200


def test_oidcc_rp_initiated_logout_no_state(lrp):
    tokens = lrp.tokens()
    response = lrp.browser.get(
        "/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
        },
    )
    assert response.location == "https://rp.example.test/post_logout_redirect"


@pytest.mark.parametrize("hint", ["modified", "hs256"])
def test_oidcc_rp_initiated_logout_bad_id_token_hint_asks_first(lrp, hint):
    tokens = lrp.tokens()
    claims = lrp.id_token(tokens["id_token"])
    if hint == "hs256":
        bad = pyjwt.encode(claims, SECRETS["client"], algorithm="HS256")
    else:
        bad = pyjwt.encode(claims, None, algorithm="none")
    response = lrp.browser.get(
        "/logout",
        query_string={
            "id_token_hint": bad,
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": "s",
        },
    )
    assert response.status_code == 200
    assert "Sign out?" in response.get_data(as_text=True)
    assert lrp.code_from(lrp.authorize(prompt="none"))  # still signed in


def test_a_hint_for_someone_else_asks_before_signing_this_browser_out(logout_app, lrp, clock):
    """RP-Initiated Logout 1.0 section 2: a hint that does not match the
    session is suspect; any page could send one of its own user's tokens."""
    faith = make_user(logout_app, email="faith@example.com")
    clock.advance(seconds=30)  # her enrolment code is spent
    foreign = RP(logout_app, logout_app.test_client(), clock, faith).tokens()["id_token"]
    lrp.sign_in(lrp.authorize(), trust=True)
    response = lrp.browser.get(
        "/logout",
        query_string={
            "id_token_hint": foreign,
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": "s",
        },
    )
    assert response.status_code == 200 and "Sign out?" in response.get_data(as_text=True)
    assert lrp.code_from(lrp.authorize(prompt="none"))  # still signed in
    assert lrp.browser.get_cookie("portal_trusted") is not None


def test_oidcc_rp_initiated_logout_no_id_token_hint_then_confirm(lrp):
    lrp.tokens()
    page = lrp.browser.get(
        "/logout",
        query_string={
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": "s",
        },
    )
    assert page.status_code == 200 and "Sign out?" in page.get_data(as_text=True)
    done = lrp.browser.post(
        "/logout",
        data={
            "confirm": "1",
            "client_id": "client",
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
        },
    )
    assert done.status_code == 200 and "You are signed out" in done.get_data(as_text=True)
    assert query(lrp.authorize(prompt="none").location)["error"] == "login_required"


def test_oidcc_rp_initiated_logout_no_params_and_only_state(lrp):
    lrp.tokens()
    for params in ({}, {"state": "s"}):
        page = lrp.browser.get("/logout", query_string=params)
        assert page.status_code == 200 and "Sign out?" in page.get_data(as_text=True)


def test_logout_accepts_post_and_an_expired_hint(lrp, clock):
    tokens = lrp.tokens()
    clock.advance(hours=2)  # the ID token has expired; the hint still says who asks
    response = lrp.browser.post(
        "/logout",
        data={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": "xyz",
        },
    )
    assert response.status_code == 302 and query(response.location) == {"state": "xyz"}


def test_discovery_advertises_logout(client):
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["end_session_endpoint"] == "https://op.example.test/logout"
    for flag in (
        "backchannel_logout_supported",
        "backchannel_logout_session_supported",
        "frontchannel_logout_supported",
        "frontchannel_logout_session_supported",
    ):
        assert meta[flag] is True


def test_my_details_ends_another_session(logout_app, lrp, receiver, clock):
    other = logout_app.test_client()
    other_rp = RP(logout_app, other, clock, lrp.user)
    other_rp.tokens()  # another browser signed in to "client"
    lrp.sign_in(lrp.authorize())
    with logout_app.app_context():
        other_sid = db.session.query(SsoSession).order_by(SsoSession.id).first()
        other_id = other_sid.id
    response = lrp.browser.post(f"/account/sessions/{other_id}/end")
    assert response.status_code == 303
    deliver(logout_app)
    assert [p for p, _ in receiver.wait_for(1)] == ["/client/backchannel"]
    assert query(other_rp.authorize(prompt="none").location)["error"] == "login_required"
    assert urlsplit(lrp.authorize(prompt="none").location).path == "/callback"


def test_rp_initiated_logout_by_post_needs_no_csrf_token(make_app, clock):
    app = make_app(WTF_CSRF_ENABLED=True)
    strict = RP(app, app.test_client(), clock, make_user(app, email="faith@example.com"))
    clock.advance(seconds=30)
    login = strict.browser.get(strict.authorize().location)
    token = login.get_data(as_text=True).split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = strict.browser.post(
        login.request.url,
        data={"email": strict.user.email, "password": strict.user.password, "csrf_token": token},
    )
    code_page = strict.browser.get(response.location).get_data(as_text=True)
    token = code_page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = strict.browser.post(
        "/login/code", data={"code": strict.user.totp.at(clock.now), "csrf_token": token}
    )
    tokens = strict.token(strict.code_from(strict.browser.get(response.location))).json
    # the RP's own form: no CSRF token of ours
    done = strict.browser.post(
        "/logout",
        data={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": "by-post",
        },
    )
    assert done.status_code == 302 and query(done.location) == {"state": "by-post"}
    # our own confirmation form without its token signs no one out: it asks again
    other = RP(app, app.test_client(), clock, strict.user)
    asked = other.browser.post("/logout", data={"confirm": "1"}).get_data(as_text=True)
    assert "<h1>Sign out?</h1>" in asked and "You are signed out" not in asked


def test_logout_after_the_session_went_idle_still_tells_the_apps(logout_app, lrp, receiver, clock):
    first, _ = sign_in_two_apps(lrp)
    clock.advance(seconds=logout_app.config["SSO_SESSION_IDLE"] + 1)
    response = lrp.browser.get(
        "/logout",
        query_string={
            "id_token_hint": first["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": "late",
        },
    )
    assert query(response.location) == {"state": "late"}
    deliver(logout_app)
    assert sorted(p for p, _ in receiver.wait_for(2)) == ["/client/backchannel", "/client2/backchannel"]


def test_oidcc_rp_initiated_logout_no_post_logout_redirect_uri(lrp):
    tokens = lrp.tokens()
    response = lrp.browser.get("/logout", query_string={"id_token_hint": tokens["id_token"], "state": "s"})
    assert response.status_code == 200 and "You are signed out" in response.get_data(as_text=True)
    assert query(lrp.authorize(prompt="none").location)["error"] == "login_required"


def test_front_channel_logout_loads_each_apps_logout_page(make_app, clock):
    clients = default_clients()
    for c in clients:
        if c["client_id"] == "client":
            c["frontchannel_logout_uri"] = "https://rp.example.test/frontchannel?app=1"
    app = make_app(clients=clients)
    front = RP(app, app.test_client(), clock, make_user(app))
    clock.advance(seconds=30)
    tokens = front.tokens()
    sid = front.id_token(tokens["id_token"])["sid"]
    response = front.browser.get(
        "/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": "fc",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    iframe = page.split('<iframe src="')[1].split('"')[0].replace("&amp;", "&")
    assert iframe.startswith("https://rp.example.test/frontchannel?app=1&")
    assert query(iframe) == {"app": "1", "iss": "https://op.example.test", "sid": sid}
    assert "frame-src https://rp.example.test" in response.headers["Content-Security-Policy"]
    assert 'id="continue"' in page and "state=fc" in page


# -- a hint alone never signs out a session this browser does not hold (F-12) ---------------


def deliveries(app) -> int:
    with app.app_context():
        return db.session.query(OutboxMessage).filter_by(kind="backchannel_logout").count()


def test_a_bare_expired_id_token_from_another_browser_asks_and_ends_nothing(logout_app, lrp, clock):
    """F-12: a cookieless GET /logout?id_token_hint=<expired token> ended the
    victim's session everywhere, with back-channel logout to its apps."""
    tokens = lrp.tokens()
    clock.advance(seconds=logout_app.config["ID_TOKEN_LIFETIME"] + 60)  # expired; the session is alive
    assert lrp.code_from(lrp.authorize(prompt="none"))
    stranger = logout_app.test_client()
    params = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
        "state": "s",
    }
    for method in (stranger.get, stranger.post):
        asked = method(
            "/logout", **({"query_string": params} if method == stranger.get else {"data": params})
        )
        assert asked.status_code == 200 and "Sign out?" in asked.get_data(as_text=True)
        assert "There is nothing to sign out of in this browser" in asked.get_data(as_text=True)
    # saying yes in that browser signs out that browser only
    done = stranger.post("/logout", data={"confirm": "1", **params})
    assert done.status_code == 200 and "You are signed out" in done.get_data(as_text=True)
    assert lrp.code_from(lrp.authorize(prompt="none"))  # the victim is still signed in
    assert deliveries(logout_app) == 0


def test_a_hint_for_another_session_of_the_same_person_asks_first(logout_app, lrp, clock):
    laptop = lrp.tokens()
    phone = RP(logout_app, logout_app.test_client(), clock, lrp.user)
    phone.sign_in(phone.authorize())
    response = phone.browser.get(
        "/logout",
        query_string={
            "id_token_hint": laptop["id_token"],
            "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
            "state": "s",
        },
    )
    assert response.status_code == 200 and "Sign out?" in response.get_data(as_text=True)
    assert phone.code_from(phone.authorize(prompt="none"))
    assert lrp.code_from(lrp.authorize(prompt="none"))
    assert deliveries(logout_app) == 0


# -- signing out always forgets "Trust this computer" (F-13) -----------------------------


def test_after_the_session_idled_out_signing_out_still_forgets_this_computer(logout_app, lrp, clock):
    """F-13: after the SSO session idled out, /logout said 'You are not signed
    in' with no form, so the trusted computer could not be forgotten."""
    lrp.sign_in(lrp.authorize(), trust=True)
    clock.advance(seconds=logout_app.config["SSO_SESSION_IDLE"] + 1)
    page = lrp.browser.get("/logout")
    assert page.status_code == 200 and 'name="confirm"' in page.get_data(as_text=True)
    done = lrp.browser.post("/logout", data={"confirm": "1"})
    assert "You are signed out" in done.get_data(as_text=True)
    assert lrp.browser.get_cookie("portal_trusted") is None
    with logout_app.app_context():
        assert db.session.query(TrustedComputer).count() == 0
    response = lrp.browser.post(
        lrp.authorize().location, data={"email": lrp.user.email, "password": lrp.user.password}
    )
    assert urlsplit(response.location).path == "/login/code"  # the next person needs the code


def test_a_trusted_browser_with_no_session_left_is_offered_to_forget_this_computer(logout_app, lrp, clock):
    lrp.sign_in(lrp.authorize(), trust=True)
    other = RP(logout_app, logout_app.test_client(), clock, lrp.user)
    other.sign_in(other.authorize())
    with logout_app.app_context():
        first = db.session.query(SsoSession).order_by(SsoSession.id).first().id
    assert other.browser.post(f"/account/sessions/{first}/end").status_code == 303  # ended from elsewhere
    page = lrp.browser.get("/logout").get_data(as_text=True)
    assert "Forget this computer" in page and 'name="confirm"' in page
    lrp.browser.post("/logout", data={"confirm": "1"})
    assert lrp.browser.get_cookie("portal_trusted") is None
    with logout_app.app_context():
        assert db.session.query(TrustedComputer).count() == 0


def test_signing_in_as_someone_else_in_this_browser_signs_the_first_person_out_properly(
    logout_app, lrp, receiver, clock
):
    """F-14: signing in as B in A's browser only marked A's session ended: no
    back-channel logout, A's tokens stayed valid, nothing in the audit log."""
    first = lrp.tokens()
    a_claims = lrp.id_token(first["id_token"])
    faith = make_user(logout_app, email="faith@example.com")
    clock.advance(seconds=30)
    response = lrp.browser.post("/login", data={"email": faith.email, "password": faith.password})
    assert urlsplit(response.location).path == "/login/code"
    lrp.browser.post("/login/code", data={"code": faith.totp.at(clock.now)})

    deliver(logout_app)
    [(where, token)] = receiver.wait_for(1)
    assert where == "/client/backchannel"
    claims = verify_logout_token(logout_app, token, "client")
    assert (claims["sid"], claims["sub"]) == (a_claims["sid"], a_claims["sub"])
    assert lrp.userinfo(first["access_token"]).status_code == 401
    with logout_app.app_context():
        ended = audit.query(user_id=lrp.user.id, events=["session_ended"])
        assert [e.details["sid"] for e in ended] == [a_claims["sid"]]
    page = lrp.browser.get("/account").get_data(as_text=True)
    assert faith.email in page and lrp.user.email not in page


def test_after_saying_yes_the_page_links_back_to_the_app_with_its_state(logout_app, lrp, clock):
    """A hint for another session asks first; the answer still leads back to
    the registered post_logout_redirect_uri, as a link (no redirect)."""
    laptop = lrp.tokens()
    phone = RP(logout_app, logout_app.test_client(), clock, lrp.user)
    phone.sign_in(phone.authorize())
    params = {
        "id_token_hint": laptop["id_token"],
        "post_logout_redirect_uri": "https://rp.example.test/post_logout_redirect",
        "state": "back",
    }
    elsewhere = {**params, "post_logout_redirect_uri": "https://evil.example/"}
    fields = dict(forms(phone.browser.get("/logout", query_string=elsewhere).data)[0]["fields"])
    assert "post_logout_redirect_uri" not in fields  # only a registered one is carried
    asked = phone.browser.get("/logout", query_string=params)
    [form] = [f for f in forms(asked.data) if dict(f["fields"]).get("confirm") == "1"]
    assert dict(form["fields"]) == {**params, "confirm": "1"}
    done = phone.browser.post("/logout", data=dict(form["fields"]))
    page = done.get_data(as_text=True)
    assert done.status_code == 200 and "You are signed out" in page
    assert 'href="https://rp.example.test/post_logout_redirect?state=back"' in page
    assert query(phone.authorize(prompt="none").location)["error"] == "login_required"
    assert lrp.code_from(lrp.authorize(prompt="none"))  # the laptop's session is the laptop's


def test_a_retry_after_the_token_lifetime_carries_a_fresh_valid_token(logout_app, lrp, receiver, clock):
    """Reliability 5d / Back-Channel Logout 1.0 2.4: each attempt mints its own
    token (new iat, exp, jti), so one sent minutes after the logout is valid
    when the app receives it."""
    receiver.clock = clock
    tokens = lrp.tokens()
    receiver.fail_first["/client/backchannel"] = 2
    lrp.browser.get("/logout", query_string={"id_token_hint": tokens["id_token"]})
    lifetime = logout_app.config["LOGOUT_TOKEN_LIFETIME"]
    for _ in range(3):
        deliver(logout_app)
        clock.advance(seconds=max(lifetime + 1, logout_app.config["OUTBOX_BACKOFF_MAX"]))
    posts = [
        (token, status, at) for path, token, status, at in receiver.posts if path == "/client/backchannel"
    ]
    assert [status for _, status, _ in posts] == [503, 503, 200]
    claims = [verify_logout_token(logout_app, token, "client") for token, _, _ in posts]
    for claim, (_, _, at) in zip(claims, posts, strict=True):
        posted = int(at.timestamp())
        assert claim["iat"] == posted and claim["exp"] == posted + lifetime  # valid when posted
    assert posts[-1][2] - posts[0][2] > timedelta(seconds=lifetime)  # the last came after the first expired
    assert len({c["jti"] for c in claims}) == 3
    assert {c["sid"] for c in claims} == {lrp.id_token(tokens["id_token"])["sid"]}


def test_logouts_queued_by_an_instance_whose_worker_stopped_are_sent_by_another(make_app, receiver, clock):
    """Reliability 5d-2: the queue is in the database; any instance's worker
    thread finds it at its next look (OUTBOX_POLL_INTERVAL), with no logout of
    its own to wake it."""
    first = make_app(clients=receiving_clients(receiver), OUTBOX_WORKER="thread")
    lrp = RP(first, first.test_client(), clock, make_user(first))
    clock.advance(seconds=30)
    tokens = lrp.tokens()
    first.extensions["outbox_worker"].stop()  # this instance's worker is gone
    lrp.browser.get("/logout", query_string={"id_token_hint": tokens["id_token"]})
    assert receiver.tokens == []
    second = make_app(clients=receiving_clients(receiver), OUTBOX_WORKER="thread", OUTBOX_POLL_INTERVAL=1)
    assert second.config["DATABASE_URL"] == first.config["DATABASE_URL"]
    second.test_client().get("/.well-known/openid-configuration")  # its first request starts its worker
    assert [p for p, _ in receiver.wait_for(1)] == ["/client/backchannel"]
    second.extensions["outbox_worker"].stop()
