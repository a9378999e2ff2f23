"""The full sign-in through the pages, as a person's browser and the app's
server do it: /authorize, the password page, the code page (a TOTP code from
the person's authenticator), back to /authorize, the app's callback, and the
code exchange at /token."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
from client import FIELD, Browser, Response

TOTP_STEP = 30


@dataclass
class Person:
    email: str
    password: str
    totp_secret: str
    last_step: int = -1  # the authenticator code of a 30 s step works once (replay guard)

    def code(self) -> str | None:
        """A code for a step not used yet (this one or the next), or None: wait."""
        step = int(time.time()) // TOTP_STEP
        for candidate in (step, step + 1):
            if candidate > self.last_step:
                self.last_step = candidate
                return pyotp.TOTP(self.totp_secret).at(candidate * TOTP_STEP)
        return None


@dataclass(frozen=True)
class App:
    """A relying party registered in the bench's clients file."""

    client_id: str
    secret: str
    redirect_uri: str
    verifier: str = "bench-verifier-" + "x" * 40

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def authorize_path(self, state: str = "s") -> str:
        return "/authorize?" + urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "response_type": "code",
                "scope": "openid profile email offline_access",
                "state": state,
                "nonce": "n-" + state,
                "code_challenge": self.challenge,
                "code_challenge_method": "S256",
            }
        )

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()

    def token_form(self, code: str) -> dict[str, str]:
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": self.verifier,
        }


class FlowError(Exception):
    """The provider answered something a sign-in does not expect."""


FORM = re.compile(rb"<form\b([^>]*)>(.*?)</form>", re.S)
ACTION = re.compile(rb'action="([^"]*)"')


def form_with(page: Response, name: str) -> tuple[str, dict[str, str]] | None:
    """(action, its prefilled fields) of the page's form that has a field `name`."""
    for attributes, inner in FORM.findall(page.body):
        if f'name="{name}"'.encode() in inner:
            action = ACTION.search(attributes)
            target = action.group(1).decode().replace("&amp;", "&") if action else ""
            fields = {n.decode(): v.decode().replace("&amp;", "&") for n, v in FIELD.findall(inner)}
            return target, fields
    return None


async def sign_in(browser: Browser, person: Person, app: App) -> dict:
    """Sign `person` in to `app` through the pages; returns the token response (JSON)."""
    response = await browser.request("GET", app.authorize_path())
    for _ in range(12):
        if response.status in (302, 303):
            target = response.location
            if target.startswith(app.redirect_uri):
                return await exchange(browser, app, _code(target))
            response = await browser.request("GET", target)
            continue
        if response.status != 200:
            raise FlowError(f"{response.status} at a sign-in step: {response.body[:200]!r}")
        if (login := form_with(response, "password")) is not None:
            action, fields = login
            fields.update(email=person.email, password=person.password)
        elif (second := form_with(response, "code")) is not None:
            action, fields = second
            code = person.code()
            while code is None:  # both usable steps spent: the next one comes within 30 s
                await asyncio.sleep(1)
                code = person.code()
            fields["code"] = code
            fields.pop("trust", None)
        else:
            raise FlowError(f"an unexpected page: {response.body[:300]!r}")
        response = await browser.request("POST", action, fields)
    raise FlowError("too many steps")


def _code(location: str) -> str:
    params = parse_qs(urlsplit(location).query)
    if "code" not in params:
        raise FlowError(f"the app got no code: {location}")
    return params["code"][0]


async def exchange(browser: Browser, app: App, code: str) -> dict:
    """The app's server redeems the code (its own connection in real life; here the browser's)."""
    response = await browser.request(
        "POST", "/token", app.token_form(code), headers={"Authorization": app.basic()}
    )
    if response.status != 200:
        raise FlowError(f"/token answered {response.status}: {response.body[:200]!r}")
    return json.loads(response.body)
