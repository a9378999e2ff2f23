"""A small HTTP/1.1 client on asyncio streams, for the one scenario wrk cannot
script: a person signing in through the pages (forms, CSRF tokens, cookies,
redirects, a TOTP code). Keep-alive, one connection per browser, no
dependencies: a general client (requests, httpx) costs more CPU per request
than the server being measured."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

CSRF = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"')
FIELD = re.compile(rb'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"')


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    set_cookies: list[str]
    body: bytes

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    def csrf(self) -> str | None:
        found = CSRF.search(self.body)
        return found.group(1).decode() if found else None


@dataclass
class Browser:
    """One browser: a keep-alive connection to the provider and its cookie jar."""

    host: str
    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    async def request(
        self,
        method: str,
        target: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One request over the kept-alive connection (reconnects once if the server closed it)."""
        parts = urlsplit(target)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = urlencode(form).encode() if form is not None else b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "User-Agent: bench/1"]
        if self.cookies:
            lines.append(f"Cookie: {self.cookie_header()}")
        if form is not None:
            lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        for attempt in (1, 2):
            if self._writer is None:
                await self._connect()
            try:
                self._writer.write(raw)
                response = await self._read()
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt == 2:
                    raise
        for header in response.set_cookies:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        if response.headers.get("connection", "").lower() == "close":
            await self.close()
        return response

    async def _read(self) -> Response:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        set_cookies: list[str] = []
        for line in header_lines:
            if not line:
                continue
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                set_cookies.append(value)
            headers[name] = value
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                chunk = await self._reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        return Response(status, headers, set_cookies, body)
