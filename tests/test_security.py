"""What every page shares (security.py): local-only return paths, headers,
clean refusals of malformed requests."""

import pytest

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
