"""The OpenID Provider as the demo app sees it outside Authlib's sign-in: its
discovery document, its signing keys, and the logout tokens it sends
(Back-Channel Logout 1.0)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError
from joserfc.jwk import KeySet

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_MAX_AGE = 600  # seconds: an older logout token is refused ("iat" must be recent)
CLOCK_LEEWAY = 60  # seconds of clock difference allowed between the provider and this app

FetchJson = Callable[[str], dict[str, Any]]


def fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON document (discovery, JWKS) from the provider."""
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


def discovery_url(issuer: str) -> str:
    return f"{issuer.rstrip('/')}/.well-known/openid-configuration"  # Discovery 1.0 section 4


class LogoutTokenError(ValueError):
    """A logout token that Back-Channel Logout 1.0 section 2.6 says to refuse."""


class Provider:
    """The provider's discovery document and signing keys, fetched once and cached."""

    def __init__(self, issuer: str, fetch: FetchJson = fetch_json) -> None:
        self.issuer, self.fetch = issuer, fetch
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            metadata = self.fetch(discovery_url(self.issuer))
            if metadata.get("issuer") != self.issuer:  # Discovery 1.0 section 4.3
                raise OAuthError(
                    "invalid_issuer", f"discovery names {metadata.get('issuer')!r}, not {self.issuer!r}"
                )
            self._metadata = metadata
        return self._metadata

    def keys(self, refresh: bool = False) -> KeySet:
        """The keys published at jwks_uri; `refresh` fetches them again (after a key rotation)."""
        if self._keys is None or refresh:
            self._keys = KeySet.import_key_set(self.fetch(self.metadata()["jwks_uri"]))
        return self._keys

    def decode_signed(self, token: str) -> jwt.Token:
        """The token, its signature checked with one of the published keys."""
        algorithms = self.metadata().get("id_token_signing_alg_values_supported", ["RS256"])
        algorithms = [alg for alg in algorithms if alg != "none"]
        try:
            return jwt.decode(token, self.keys(), algorithms=algorithms)
        except InvalidKeyIdError:  # signed with a key published after we fetched them
            return jwt.decode(token, self.keys(refresh=True), algorithms=algorithms)

    def verify_logout_token(self, token: str, client_id: str) -> dict[str, Any]:
        """The claims of a logout token for `client_id`, validated as Back-Channel
        Logout 1.0 section 2.6 says. Raises LogoutTokenError or a joserfc JoseError."""
        decoded = self.decode_signed(token)
        typ = str(decoded.header.get("typ", "JWT")).lower().removeprefix("application/")
        if typ not in ("jwt", "logout+jwt"):
            raise LogoutTokenError(f"a logout token is not typed {typ!r}")
        claims = decoded.claims
        jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": client_id},  # equal to it, or a list that contains it
            iat={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
            events={"essential": True},
        ).validate(claims)
        if claims["iat"] < time.time() - LOGOUT_TOKEN_MAX_AGE:
            raise LogoutTokenError("the logout token was issued too long ago")
        event = claims["events"].get(BACKCHANNEL_EVENT) if isinstance(claims["events"], dict) else None
        if not isinstance(event, dict):
            raise LogoutTokenError(f"events has no {BACKCHANNEL_EVENT} member")
        if not claims.get("sid") and not claims.get("sub"):
            raise LogoutTokenError("a logout token names a sid, a sub or both")
        if "nonce" in claims:
            raise LogoutTokenError("a logout token has no nonce")
        return claims
