"""Fixtures of the end-to-end tests: a real SMTP server, the provider and two
demo apps as processes, headless Chromium (Debian's) driven by Playwright, and
screenshots of every page in test-artifacts/screenshots/ (printed at the end).

The processes live for the whole session; each test gets a fresh browser
context (no cookies) and its own screenshot folder."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailserver import Inbox, free_port, serving

from .people import (
    CHECKED,
    TOO_WIDE,
    Account,
    Mailbox,
    Screens,
    register,
    set_up_authenticator,
    sign_in_with_password,
    unique_email,
)
from .servers import ROOT, CallbackServer, DemoApp, Provider, demo_app_process, provider_process, sha256

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright cannot download browsers here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 10_000  # every Playwright wait and expect


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter, config) -> None:
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.iterdir()):
        terminalreporter.write_line(f"e2e screenshots (1280 and 360 px wide): {SCREENSHOTS}")
    if CHECKED:
        terminalreporter.write_line(f"axe-core (WCAG 2.2 AA) checked {len(CHECKED)} pages at 1280 and 360 px")
    for page in TOO_WIDE:
        terminalreporter.write_line(f"e2e page wider than the window: {page}")


# -- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp() -> Iterator[Inbox]:
    """The SMTP server of tests/mailserver.py, for the whole session."""
    with serving() as inbox:
        yield inbox


@pytest.fixture
def mail(smtp: Inbox) -> Mailbox:
    return Mailbox(smtp)


@pytest.fixture(scope="session")
def e2e_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def demo_apps() -> tuple[DemoApp, DemoApp]:
    """Modeler and Forum, on free ports (started by `running_demo_apps`)."""
    return DemoApp("Modeler", "modeler", free_port()), DemoApp("Forum", "forum", free_port())


@pytest.fixture(scope="session")
def rp_callback() -> Iterator[CallbackServer]:
    with CallbackServer(free_port()) as server:
        yield server


NODE_CLIENT_SECRET = "openid-client-check-secret-" + "x" * 16


@pytest.fixture(scope="session")
def node_client(rp_callback: CallbackServer) -> dict:
    """The registration of tests/e2e/openid_client_check.mjs (client_secret_basic)."""
    return {
        "client_id": "openid-client-check",
        "name": "openid-client check",
        "redirect_uris": [f"{rp_callback.url}/cb"],
        "post_logout_redirect_uris": [f"{rp_callback.url}/logged-out"],
        "token_endpoint_auth_method": "client_secret_basic",
        "client_secret_sha256": sha256(NODE_CLIENT_SECRET),
        "scopes": ["openid", "profile", "email", "offline_access"],
        "first_party": True,
    }


@pytest.fixture(scope="session")
def provider(
    e2e_folder: Path, smtp: Inbox, demo_apps: tuple[DemoApp, DemoApp], node_client: dict
) -> Iterator[Provider]:
    """The Login Portal as `make run` runs it, with the demo apps and the
    openid-client check registered, mailing through `smtp`."""
    clients = [app.registration() for app in demo_apps] + [node_client]
    with provider_process(e2e_folder / "provider", free_port(), smtp.port, clients) as running:
        yield running


@pytest.fixture(scope="session")
def running_demo_apps(
    provider: Provider, demo_apps: tuple[DemoApp, DemoApp], e2e_folder: Path
) -> Iterator[tuple[DemoApp, DemoApp]]:
    if not (ROOT / "examples" / "demo_rp" / "__main__.py").exists():
        pytest.skip("examples/demo_rp is not there yet: the journey through two apps needs it")
    modeler, forum = demo_apps
    with (
        demo_app_process(modeler, provider.url, e2e_folder / "modeler.log"),
        demo_app_process(forum, provider.url, e2e_folder / "forum.log"),
    ):
        yield modeler, forum


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium, one for the session (Playwright's sync API owns an event loop)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs it (tests/e2e/install-deps.sh)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extras")
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


def new_context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def context(browser):
    """A fresh browser profile: no cookies, nothing trusted."""
    context = new_context(browser)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture
def shots(page, request: pytest.FixtureRequest) -> Screens:
    """`shots("name")` photographs the current page at both widths, into a folder of
    this test's own (emptied first; other runs sharing the checkout keep theirs)."""
    folder = SCREENSHOTS / re.sub(r"[^\w-]+", "-", request.node.name).strip("-")
    shutil.rmtree(folder, ignore_errors=True)
    return Screens(folder, page)


# -- people ---------------------------------------------------------------------------------


def create_account(provider: Provider, browser, mail: Mailbox, who: str) -> Account:
    """An activated account: with `users create` when the CLI has it, else
    registered and activated through the pages."""
    account = Account(who.title(), unique_email(who))
    made = provider.cli(
        "users",
        "create",
        account.email,
        "--name",
        account.name,
        "--password-stdin",
        "--activated",
        stdin=account.password + "\n",
    )
    if not provider.lacks(made):
        assert made.returncode == 0, made.stderr
        return account
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(f"{provider.url}/register")
        register(page, None, account)
        page.goto(mail.link(account.email, "Activate", "/activate/"))
        page.get_by_role("heading", name="Your account is active").wait_for()
    finally:
        context.close()
    return account


@pytest.fixture
def enrolled_account(provider: Provider, browser, mail: Mailbox) -> Account:
    """An activated account whose first sign-in set up an authenticator app
    (in a browser of its own, signed out again)."""
    account = create_account(provider, browser, mail, "enrolled")
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(f"{provider.url}/login")
        sign_in_with_password(page, account)
        account.authenticator = set_up_authenticator(page)
    finally:
        context.close()
    return account
