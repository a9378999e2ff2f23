"""The conformance suite's Form Post OP plan (oidcc-formpost-basic-certification-test-plan):
the Basic modules with `response_mode=form_post`. Success and error responses
alike reach the RP as a POSTed form, never in the query (CONFORMANCE.md 3)."""

import pytest
from rp import CALLBACK, assert_error, form_post

FORM_POST = {"response_mode": "form_post"}


def _posted(response) -> dict[str, str]:
    """The fields the browser POSTs to the RP's callback, which must be exactly the redirect URI."""
    action, fields = form_post(response)
    assert action == CALLBACK
    return fields


def test_oidcc_formpost_server(rp):
    response = rp.sign_in(rp.authorize(**FORM_POST))
    fields = _posted(response)
    assert set(fields) == {"code", "state", "iss"}
    assert (fields["state"], fields["iss"]) == ("af0ifjsldkj", rp.issuer)
    tokens = rp.token(fields["code"]).json
    rp.checked_id_token(tokens)


def test_oidcc_formpost_response_type_missing(rp):
    response = rp.authorize(response_type=None, **FORM_POST)
    assert_error(_posted(response), {"invalid_request", "unsupported_response_type"}, rp.issuer)


def test_oidcc_formpost_prompt_none_not_logged_in(rp):
    assert_error(_posted(rp.authorize(prompt="none", **FORM_POST)), "login_required", rp.issuer)


def test_oidcc_formpost_prompt_none_logged_in(rp):
    _, first, _ = rp.flow(**FORM_POST)
    _, second = rp.redeem(rp.authorize(prompt="none", **FORM_POST))
    assert (second["sub"], second["auth_time"]) == (first["sub"], first["auth_time"])


def test_oidcc_formpost_prompt_login(rp):
    _, first, _ = rp.flow(**FORM_POST)
    _, second = rp.redeem(rp.authorize(prompt="login", **FORM_POST))
    assert second["auth_time"] > first["auth_time"]


def test_oidcc_formpost_max_age_1(rp, clock):
    _, first, _ = rp.flow(**FORM_POST)
    clock.advance(seconds=2)
    _, second = rp.redeem(rp.authorize(max_age="1", **FORM_POST))
    assert second["auth_time"] > first["auth_time"]


def test_oidcc_formpost_id_token_hint(rp):
    tokens, first, _ = rp.flow(**FORM_POST)
    _, second = rp.redeem(rp.authorize(prompt="none", id_token_hint=tokens["id_token"], **FORM_POST))
    assert (second["sub"], second["auth_time"]) == (first["sub"], first["auth_time"])


@pytest.mark.parametrize(
    "params",
    [
        {"scope": "openid profile"},
        {"scope": "openid email"},
        {"scope": "openid profile email address phone"},
        {"nonce": None},
        {"display": "page"},
        {"display": "popup"},
        {"extra": "foobar"},
        {"ui_locales": "se"},
        {"claims_locales": "se"},
        {"login_hint": "buffy@example.com"},
        {"acr_values": "urn:login-portal:acr:pwd urn:login-portal:acr:mfa"},
        {"max_age": "10000"},
        {"claims": '{"userinfo": {"name": {"essential": true}}}'},
        {"method": "post"},
    ],
    ids=[
        "scope-profile",
        "scope-email",
        "scope-all",
        "ensure-request-without-nonce-succeeds-for-code-flow",
        "display-page",
        "display-popup",
        "ensure-request-with-unknown-parameter-succeeds",
        "ui-locales",
        "claims-locales",
        "login-hint",
        "ensure-request-with-acr-values-succeeds",
        "max-age-10000",
        "claims-essential",
        "ensure-post-request-succeeds",
    ],
)
def test_oidcc_formpost_basic_modules_succeed(rp, params):
    rp.flow(**FORM_POST, **params)
    assert rp.last["state"] == "af0ifjsldkj" and rp.last["iss"] == rp.issuer


def test_oidcc_formpost_state_is_posted_exactly(rp):
    state = "x" * 120 + "\"<&>'-._~"
    fields = _posted(rp.sign_in(rp.authorize(state=state, **FORM_POST)))
    assert fields["state"] == state


def test_oidcc_formpost_codereuse(rp):
    code = _posted(rp.sign_in(rp.authorize(**FORM_POST)))["code"]
    assert rp.token(code).status_code == 200
    assert rp.token(code).json["error"] == "invalid_grant"


def test_oidcc_formpost_ensure_registered_redirect_uri(rp):
    response = rp.authorize(redirect_uri=f"{CALLBACK}/elsewhere", **FORM_POST)
    assert response.status_code == 400 and response.location is None
    assert b'<form method="post"' not in response.data


def test_oidcc_formpost_request_object_rejected_as_unsupported(rp):
    response = rp.authorize(request="eyJhbGciOiJub25lIn0.eyJzdGF0ZSI6ImluIn0.", state=None, **FORM_POST)
    assert_error(_posted(response), "request_not_supported", rp.issuer, state=None)


def test_formpost_page_may_post_only_to_the_rp(rp):
    response = rp.sign_in(rp.authorize(**FORM_POST))
    assert "form-action https://rp.example.test" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
