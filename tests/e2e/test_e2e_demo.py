"""`make demo` as a newcomer meets it (UX review 2026-12-03, defects 1 and 18):
the launcher serves the portal and one demo app for each of the six apps of
clients.yaml; every tile of the portal home opens a signed-in app after one
sign-in; each app links to the portal's My details and Manage MFA; DevOps
Portal (require_mfa) asks a trusted computer for a code; the pages fit a
360 px window; Ctrl-C and SIGTERM stop everything. Real processes, headless
Chromium."""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from .conftest import create_account
from .people import Account, Mailbox, Screens, enter_code, set_up_authenticator, sign_in_with_password
from .servers import DemoApp, Launcher, launcher_process
from .test_e2e_journey import Navigations, expect_signed_in, reload_until_signed_out
from .test_e2e_pages import photo

SIX_APPS = ["Modeler", "MyWEM", "Forum", "Academy", "Partner Portal", "DevOps Portal"]
ACR_MFA, ACR_PASSWORD = "urn:login-portal:acr:mfa", "urn:login-portal:acr:pwd"


@pytest.fixture(scope="module")
def demo(e2e_folder: Path, smtp) -> Iterator[Launcher]:
    """`make demo`, for this module."""
    with launcher_process(e2e_folder / "demo", smtp.port) as running:
        yield running


def app_named(demo: Launcher, name: str) -> DemoApp:
    return next(app for app in demo.apps if app.name == name)


def open_tile(page: Page, portal: str, app: DemoApp) -> None:
    """On the portal home, click the app's tile."""
    page.goto(f"{portal}/")
    expect(page.get_by_role("heading", name=re.compile("^Welcome, "))).to_be_visible()
    page.get_by_role("link", name=re.compile(rf"^{re.escape(app.name)}")).click()


def expect_acr(page: Page, acr: str) -> None:
    """The `acr` of the app's ID token, as its page shows it."""
    row = page.locator("tr", has=page.locator("th", has_text=re.compile("^acr$")))
    expect(row.locator("td")).to_have_text(acr)


def enrolled(demo: Launcher, browser, mail: Mailbox, page: Page, who: str) -> Account:
    """An account signed in at the portal on `page`, its authenticator just set up."""
    account = create_account(demo.portal, browser, mail, who)
    page.goto(f"{demo.portal.url}/login")
    sign_in_with_password(page, account)
    page.wait_for_url(f"{demo.portal.url}/mfa/setup")
    account.authenticator = set_up_authenticator(page)
    return account


def test_make_demo_serves_the_portal_and_the_six_registered_apps(demo: Launcher):
    """UX defect 1: all six apps answer, on the ports of their registrations, once the
    launcher printed their URLs; each asks the portal about a visitor and shows its page."""
    assert [app.name for app in demo.apps] == SIX_APPS
    printed = demo.output
    assert re.search(rf"^Login Portal +{re.escape(demo.portal.url)}/$", printed, re.MULTILINE), printed
    for app in demo.apps:
        assert re.search(rf"^{re.escape(app.name)} +{re.escape(app.url)}/$", printed, re.MULTILINE), printed
        assert requests.get(f"{app.url}/healthz", timeout=5).json() == {
            "status": "ok",
            "client_id": app.client_id,
        }
        visit = requests.Session().get(f"{app.url}/", timeout=10)  # the silent check and back
        assert visit.status_code == 200 and visit.url == f"{app.url}/"
        assert f"<title>{app.name} · a demo app of the Login Portal</title>" in visit.text
        assert "<h2>You are not signed in</h2>" in visit.text
    assert "Ctrl-C stops all 7." in printed and "not started" not in printed


def test_a_first_visit_says_not_signed_in_with_a_title_and_an_icon(
    page: Page, shots: Screens, demo: Launcher
):
    """UX defect 18: no "You are signed out" for someone who never signed in; a title per app;
    /favicon.ico answers."""
    for app in demo.apps:
        page.goto(app.url)
        expect(page).to_have_url(f"{app.url}/")
        expect(page).to_have_title(f"{app.name} · a demo app of the Login Portal")
        expect(page.get_by_role("heading", name="You are not signed in")).to_be_visible()
        expect(page.get_by_text("signed out")).to_have_count(0)
        expect(page.get_by_role("link", name="All apps")).to_have_attribute("href", f"{demo.portal.url}/")
        icon = page.request.get(f"{app.url}/favicon.ico")
        assert icon.ok and icon.headers["content-type"].startswith("image/svg+xml"), icon.status
    photo(shots, "devops-portal-first-visit")


def test_every_tile_of_the_portal_home_opens_a_signed_in_app(
    page: Page, shots: Screens, demo: Launcher, browser, mail: Mailbox
):
    """UX defect 1: one sign-in at the portal, then each tile opens its app signed in, with
    no portal page on the way (single sign-on), except DevOps Portal: its `require_mfa`
    asks for a code in this sign-in, so a code page comes first. Each app links to My
    details and Manage MFA; signing out in one signs out all the others (back-channel
    logout)."""
    portal = demo.portal.url
    account = enrolled(demo, browser, mail, page, "tiles")
    page.goto(f"{portal}/")
    photo(shots, "portal-home")
    visited = Navigations(page, portal)
    for app in demo.apps:
        mark = len(visited.paths)
        open_tile(page, portal, app)
        if app.client_id == "devops-portal":  # require_mfa: a code for this sign-in, no password
            expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
            enter_code(page, account.authenticator.code())
            expect_signed_in(page, app, account)
            assert "/login" not in visited.since(mark), visited.since(mark)  # no password page
        else:
            expect_signed_in(page, app, account)
            expect(page.get_by_role("status")).to_contain_text("Single sign-on")
            assert set(visited.since(mark)) == {"/", "/authorize"}, visited.since(mark)  # no sign-in page
        expect(page).to_have_title(f"{app.name} · a demo app of the Login Portal")
        expect_acr(page, ACR_MFA)
        photo(shots, f"{app.client_id}-signed-in")

    # The app's links to the portal: My details, then Change MFA information (Manage MFA).
    mywem = app_named(demo, "MyWEM")
    page.goto(mywem.url)
    page.get_by_role("link", name="My details").click()
    expect(page).to_have_url(f"{portal}/account")
    expect(page.get_by_role("heading", name="My details")).to_be_visible()
    page.goto(mywem.url)
    page.get_by_role("link", name="Change MFA information").click()
    expect(page).to_have_url(f"{portal}/account/mfa")
    expect(page.get_by_role("heading", name="Manage MFA")).to_be_visible()
    page.goto(mywem.url)
    page.get_by_role("link", name="All apps").click()
    expect(page).to_have_url(f"{portal}/")

    # Sign out in Academy: the portal ends the session and tells the five others.
    academy = app_named(demo, "Academy")
    page.goto(academy.url)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{academy.url}/")
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("You signed out at the Login Portal too.")
    photo(shots, "academy-signed-out")
    for app in demo.apps:
        reload_until_signed_out(page, app)


def test_devops_portal_asks_a_trusted_computer_for_a_code(
    page: Page, context, shots: Screens, demo: Launcher, browser, mail: Mailbox
):
    """README, clients.yaml: require_mfa: true is a code at every sign-in, trusted computer
    or not. A password-only sign-in on a trusted computer opens Modeler at once, and
    DevOps Portal only after a code (Cancel leaves DevOps Portal signed out)."""
    portal = demo.portal.url
    account = enrolled(demo, browser, mail, page, "trusting")
    context.clear_cookies(name="portal_session")
    page.goto(f"{portal}/login")
    sign_in_with_password(page, account)
    page.wait_for_url(f"{portal}/login/code")
    enter_code(page, account.authenticator.code(), trust=True)
    expect(page.get_by_role("heading", name=f"Welcome, {account.name}")).to_be_visible()
    context.clear_cookies(name="portal_session")  # a new day: the computer is still trusted
    page.goto(f"{portal}/login")
    sign_in_with_password(page, account)
    expect(page.get_by_role("heading", name=f"Welcome, {account.name}")).to_be_visible()

    modeler, devops = app_named(demo, "Modeler"), app_named(demo, "DevOps Portal")
    open_tile(page, portal, modeler)
    expect_signed_in(page, modeler, account)
    expect_acr(page, ACR_PASSWORD)

    open_tile(page, portal, devops)
    page.wait_for_url(f"{portal}/login/code")
    expect(page.get_by_text("DevOps Portal asks for a code for this sign-in.")).to_be_visible()
    photo(shots, "devops-portal-asks-for-a-code")
    page.get_by_role("button", name="Cancel and go back to DevOps Portal").click()  # access_denied
    expect(page).to_have_url(f"{devops.url}/")
    expect(page.get_by_role("heading", name="You are not signed in")).to_be_visible()
    statuses = page.get_by_role("status")
    expect(statuses.filter(has_text="DevOps Portal asks you to confirm it's you")).to_be_visible()
    expect(statuses.filter(has_text="You cancelled the sign-in at the Login Portal.")).to_be_visible()
    photo(shots, "devops-portal-after-cancel")

    page.get_by_role("link", name="Sign in with the Login Portal").click()
    page.wait_for_url(f"{portal}/login/code")
    enter_code(page, account.authenticator.code())
    expect_signed_in(page, devops, account)
    expect_acr(page, ACR_MFA)


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_a_demo_started_in_the_background(e2e_folder: Path, smtp, signum):
    """UX review: SIGINT to a `make demo` started in the background did nothing (the shell
    starts it with SIGINT ignored). Now either signal stops the portal and the six apps."""
    name = signal.Signals(signum).name.lower()
    with launcher_process(e2e_folder / f"demo-{name}", smtp.port, background=True) as running:
        ports = [int(running.portal.url.rsplit(":", 1)[1])] + [app.port for app in running.apps]
        assert not any(port_is_closed(port) for port in ports)
        assert running.stop(signum) == 0
        assert all(port_is_closed(port) for port in ports), ports
