"""What a person has and does: a mailbox, an authenticator app, and the steps
they take on the portal's pages (register, sign in, enter a code, set up a
method). Each step waits for what a person would see before going on, and
every page it shows is photographed at two widths and checked with axe-core
for WCAG 2.2 AA (`Screens`): a serious or critical violation fails the test."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
from axe_playwright_python.sync_playwright import Axe
from mailserver import Inbox, links, text_of
from playwright.sync_api import Page, expect

MAIL_TIMEOUT = 10  # seconds for a message to reach the SMTP server
TOTP_STEP = 30
CODE_LINE = re.compile(r"^\s*(\d{6})\s*$", re.MULTILINE)
WIDTHS = (1280, 360)
HEIGHTS = {1280: 800, 360: 740}
TOO_WIDE: list[str] = []  # pages wider than the window, listed at the end of the run
AXE = Axe()
# WCAG 2.2 level A and AA, the rules axe-core has for them
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
    "resultTypes": ["violations"],
}
BLOCKING = ("serious", "critical")
CHECKED: list[str] = []  # every page axe looked at (count printed at the end of the run)


class AccessibilityError(AssertionError):
    """A page has serious or critical WCAG 2.2 AA violations (axe-core)."""


def accessibility_problems(page: Page) -> list[str]:
    """The serious and critical axe-core violations of the page as it is now,
    one line each: rule, impact, what it asks, and the elements concerned."""
    violations = AXE.run(page, options=AXE_OPTIONS).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(str(n['target']) for n in v['nodes'][:5])}"
        for v in violations
        if v["impact"] in BLOCKING
    ]


def unique_email(who: str) -> str:
    return f"{who}.{secrets.token_hex(4)}@example.com"


class Mailbox:
    """A person's view of the SMTP server: the messages to an address, each read once."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.read: dict[str, int] = {}

    def next(self, address: str, subject: str = "") -> EmailMessage:
        """Wait (bounded) for the next unread message to `address` whose subject
        contains `subject`; the messages before it count as read."""
        deadline = time.monotonic() + MAIL_TIMEOUT
        while True:
            received = self.inbox.to(address)
            for index in range(self.read.get(address, 0), len(received)):
                if subject in str(received[index]["Subject"]):
                    self.read[address] = index + 1
                    return received[index]
            assert time.monotonic() < deadline, f"no mail {subject!r} to {address} within {MAIL_TIMEOUT} s"
            time.sleep(0.05)  # bounded poll of the SMTP server's inbox

    def each(self, address: str, *subjects: str) -> list[EmailMessage]:
        """Wait (bounded) for one unread message per subject to `address`, in
        whatever order they arrive (the worker sends them independently); the
        messages up to the last of them count as read."""
        start = self.read.get(address, 0)
        found: list[EmailMessage] = []
        last = start
        for subject in subjects:
            self.read[address] = start
            found.append(self.next(address, subject))
            last = max(last, self.read[address])
        self.read[address] = last
        return found

    def link(self, address: str, subject: str, path: str) -> str:
        """The link containing `path` in the next message `subject` to `address`."""
        message = self.next(address, subject)
        found = [u for u in links(message) if path in u]
        assert found, f"no {path} link in {message['Subject']!r}: {text_of(message)}"
        return found[0]

    def code(self, address: str) -> str:
        """The 6-digit code of the next message to `address` that has one."""
        message = self.next(address, "code")
        match = CODE_LINE.search(text_of(message))
        assert match, f"no code in {message['Subject']!r}: {text_of(message)}"
        return match.group(1)


class Authenticator:
    """An authenticator app holding one secret. The portal accepts the previous,
    current and next 30-second step once each (replay guard), so each code
    handed out is for a step after the last one used."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP("".join(secret.split()))
        self.last_step: int | None = None

    def code(self) -> str:
        now = time.time()
        current = int(now // TOTP_STEP)
        safe = (current - 1,) if TOTP_STEP - now % TOTP_STEP > 5 else ()  # not about to fall out
        for step in (*safe, current, current + 1):
            if self.last_step is None or step > self.last_step:
                self.last_step = step
                return self.totp.at(step * TOTP_STEP)
        # Three codes used within a minute: wait for the clock, as a person would.
        time.sleep((self.last_step * TOTP_STEP) - now + 1)
        return self.code()

    def wrong_code(self) -> str:
        """Six digits that no nearby step shows."""
        now = int(time.time())
        near = {self.totp.at(now + k * TOTP_STEP) for k in range(-2, 3)}
        return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 111111)) if c not in near)


@dataclass
class Account:
    name: str
    email: str
    password: str = field(default_factory=lambda: f"plum orchard {secrets.token_hex(3)} lantern")
    authenticator: Authenticator | None = None


class Screens:
    """Photographs of every page visited, at 1280 and 360 px wide, numbered in order."""

    def __init__(self, folder: Path, page: Page) -> None:
        self.folder = folder
        self.page = page
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str) -> None:
        self.count += 1
        stem = f"{self.count:02d}-{name}"
        notes = []
        problems: list[str] = []
        for width in WIDTHS:
            self.page.set_viewport_size({"width": width, "height": HEIGHTS[width]})
            self.page.screenshot(path=self.folder / f"{stem}-{width}.png", full_page=True)
            wide = self.page.evaluate("document.documentElement.scrollWidth")
            if wide > width:  # the person has to scroll sideways
                notes.append(f"{wide} px wide at {width} px")
                TOO_WIDE.append(f"{self.folder.name}/{stem} ({urlsplit(self.page.url).path}): {notes[-1]}")
            problems += [f"at {width} px: {p}" for p in accessibility_problems(self.page)]
        CHECKED.append(self.page.url)
        self.page.set_viewport_size({"width": WIDTHS[0], "height": HEIGHTS[WIDTHS[0]]})
        with (self.folder / "index.txt").open("a") as index:
            index.write("\t".join([stem, self.page.url, *notes, *problems]) + "\n")
        if problems:
            raise AccessibilityError(f"{stem} ({self.page.url}): WCAG 2.2 AA, axe-core:\n" + "\n".join(problems))


# -- steps on the portal's pages -----------------------------------------------------------


def register(page: Page, shots: Screens | None, account: Account) -> None:
    """On /register: name, email, password twice → "Check your email"."""
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    page.get_by_label("Full name").fill(account.name)
    page.get_by_label("Email address").fill(account.email)
    page.get_by_label("Password", exact=True).fill(account.password)
    page.get_by_label("Repeat the password").fill(account.password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name=re.compile("Check your email"))).to_be_visible()
    if shots:
        shots("check-your-email")


def sign_in_with_password(page: Page, account: Account) -> None:
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email address").fill(account.email)
    page.get_by_label("Password", exact=True).fill(account.password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def enter_code(page: Page, code: str, trust: bool = False) -> None:
    """The sign-in's second step: the code, and "Trust this computer" if asked."""
    page.get_by_label("6-digit code").fill(code)
    if trust:
        page.get_by_label("Trust this computer (skip MFA for a week)").check()
    page.get_by_role("button", name="Verify").click()


def set_up_authenticator(page: Page, shots: Screens | None = None) -> Authenticator:
    """From "Set up two-step sign-in": choose the app, read the key, confirm with a code
    (after one wrong code, whose message is checked)."""
    expect(page.get_by_role("heading", name="Set up two-step sign-in")).to_be_visible()
    if shots:
        shots("mfa-choose")
    page.get_by_role("link", name=re.compile("Authenticator app")).click()
    expect(page.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
    page.get_by_text("Can't scan it? Enter this key instead").click()
    secret = page.locator("#secret")
    expect(secret).to_be_visible()
    app = Authenticator(secret.inner_text())
    if shots:
        shots("mfa-authenticator")
        page.get_by_label("6-digit code").fill(app.wrong_code())
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("alert")).to_contain_text("That code is not right")
        shots("mfa-authenticator-wrong-code")
    page.get_by_label("6-digit code").fill(app.code())
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Your account is protected")).to_be_visible()
    return app
