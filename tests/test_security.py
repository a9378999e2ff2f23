"""What every page shares (security.py): local-only return paths, headers,
clean refusals of malformed requests."""

import re

import pytest
from rp import make_user

from oidc_provider.security import safe_next


@pytest.mark.parametrize(
    "url",
    [
        "//evil.example/",
        "/\\evil.example",
        "/\t/evil.example",  # browsers drop tabs and line breaks: "//evil.example"
        "/\n/evil.example",
        "/\r/evil.example",
        " //evil.example",
        "/\x00/evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "",
        None,
    ],
)
def test_a_return_path_must_be_local(url):
    assert safe_next(url) is None


def test_a_local_return_path_is_kept():
    assert safe_next("/account/mfa?x=1") == "/account/mfa?x=1"


def test_the_welcome_page_never_links_away(rp):
    rp.sign_in(rp.authorize())
    page = rp.browser.get("/account/mfa/welcome", query_string={"next": "/\t/evil.example"})
    assert "evil.example" not in page.get_data(as_text=True)


# -- forms --------------------------------------------------------------------------------------

# The Referer a browser sends for a same-origin form under each Referrer-Policy (Fetch, Referrer Policy).
SAME_ORIGIN_REFERER = {
    "no-referrer": None,
    "same-origin": "url",
    "strict-origin": "origin",
    "origin": "origin",
}


def test_forms_work_over_https_where_the_csrf_check_wants_a_referer(make_app):
    """Flask-WTF checks the Referer of every form over https; a page whose
    Referrer-Policy lets the browser send none could never be submitted."""
    app = make_app(WTF_CSRF_ENABLED=True)
    user = make_user(app)
    browser = app.test_client()
    https = "https://op.example.test"
    page = browser.get("/login", base_url=https)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True))[1]
    sent = SAME_ORIGIN_REFERER[page.headers["Referrer-Policy"]]
    headers = {"Referer": f"{https}/login" if sent == "url" else https} if sent else {}
    response = browser.post(
        "/login",
        base_url=https,
        headers=headers,
        data={"csrf_token": token, "email": user.email, "password": user.password},
    )
    assert response.status_code == 302 and response.location == "/login/code"


# Refused with no CSRF token: every form of ours. Exempt: what RPs post (RFC 6749, RP-Initiated
# Logout 1.0); the logout page still checks the token of its own confirmation form.
CSRF_EXEMPT = {"/authorize", "/logout", "/token", "/userinfo", "/revoke", "/introspect"}


def test_every_form_but_the_protocol_endpoints_needs_a_csrf_token(make_app):
    app = make_app(WTF_CSRF_ENABLED=True)
    urls = app.url_map.bind("localhost")
    for rule in [r for r in app.url_map.iter_rules() if "POST" in r.methods]:
        path = urls.build(rule.endpoint, dict.fromkeys(rule.arguments, 1))
        response = app.test_client().post(path, data={"confirm": "1"})
        refused = response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
        assert refused == (rule.rule not in CSRF_EXEMPT), (rule.rule, response.status_code)


# -- headers ---------------------------------------------------------------------------------


def test_every_page_has_the_security_headers(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"  # none to the apps; see the https test
    assert "Strict-Transport-Security" not in response.headers  # plain http: HSTS would be ignored
    secure = client.get("/login", base_url="https://op.example.test")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_forms_may_lead_only_here_and_to_the_registered_apps(client):
    """CSP form-action also governs where a submitted form's redirects may go
    (the code goes back to the app): the apps' origins, and no other site."""
    csp = client.get("/login").headers["Content-Security-Policy"]
    form_action = re.search(r"form-action ([^;]+)", csp)[1].split()
    assert form_action == ["'self'", "http://127.0.0.1:7000", "https://rp.example.test"]


def test_pages_are_not_kept_in_the_browser_cache(app, client):
    """The authenticator's secret, My details: nothing for the next user of a
    shared computer to find in its cache (ASVS 8.2.1)."""
    newcomer = make_user(app, email="willow@example.com", totp=False)
    client.post("/login", data={"email": newcomer.email, "password": newcomer.password})
    for page in ("/mfa/setup/authenticator", "/login", "/login/code"):
        assert client.get(page).headers["Cache-Control"] == "no-store", page
    assert client.get("/.well-known/openid-configuration").headers["Cache-Control"].startswith("public")
    with client.get("/static/portal.css") as stylesheet:
        assert "no-store" not in stylesheet.headers["Cache-Control"]


# -- malformed requests: a clear 4xx, never a 500 ------------------------------------------


def test_plain_http_to_the_protocol_endpoints_is_refused_not_a_500(client):
    token = client.post("/token", base_url="http://op.example.test", data={"grant_type": "x"})
    assert token.status_code == 400 and token.json["error"] == "insecure_transport"
    page = client.get("/authorize", base_url="http://op.example.test", query_string={"client_id": "client"})
    assert page.status_code == 400 and "https" in page.get_data(as_text=True)


@pytest.mark.parametrize("endpoint", ["/token", "/revoke", "/introspect"])
def test_basic_credentials_that_are_not_utf8_are_an_invalid_client(client, endpoint):
    data = {"grant_type": "authorization_code", "code": "x", "token": "x"}
    response = client.post(endpoint, headers={"Authorization": "Basic //79"}, data=data)
    assert response.status_code == 401 and response.json["error"] == "invalid_client"


@pytest.mark.parametrize("number", ["2147483648", "99999999999999999999999"])
@pytest.mark.parametrize("url", ["/account/sessions/{}/end", "/account/trusted/{}/revoke"])
def test_an_id_too_large_for_the_database_is_not_found(rp, url, number):
    rp.sign_in(rp.authorize())
    assert rp.browser.post(url.format(number)).status_code == 404


def test_an_id_of_more_digits_than_python_reads_is_no_id(app, rp):
    """int() refuses more than 4300 digits with a ValueError: a 500 unless read with care."""
    huge = "9" * 5000
    rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    assert rp.browser.get("/login/code", query_string={"method": huge}).status_code == 302
    rp.sign_in(rp.authorize())  # a fresh sign-in: may add methods
    assert rp.browser.get("/mfa/setup/email", query_string={"replaces": huge}).status_code == 200


@pytest.mark.parametrize(
    "request_args",
    [
        {"path": "/login", "query_string": {"tx": "a\x00b"}},
        {"path": "/login", "method": "POST", "data": {"email": "a@example.com", "password": "x\x00"}},
        {"path": "/authorize", "query_string": {"client_id": "client", "nonce": "\x00"}},
        {
            "path": "/token",
            "method": "POST",
            "data": {"grant_type": "refresh_token", "refresh_token": "\x00"},
        },
        {"path": "/login", "headers": {"User-Agent": "a\x00b"}},
    ],
    ids=["query", "form", "authorize", "token", "header"],
)
def test_a_nul_character_anywhere_is_refused(client, request_args):
    """PostgreSQL cannot store or even compare a NUL: refused before any query."""
    response = client.open(**request_args)
    assert response.status_code == 400
    assert "NUL" in response.get_data(as_text=True)
