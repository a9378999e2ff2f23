"""The registry of relying-party apps, read from `clients.yaml`.

Every client becomes a frozen `Client` that Authlib uses directly. The file is
validated as a whole: `validate()` returns every problem, each naming the
client and the field, and the app refuses to start while there is one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from authlib.oauth2.rfc6749 import ClientMixin
from flask import Flask, current_app
from joserfc.jwk import KeySet

from .db import same

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SIGNING_ALGS = ("RS256", "ES256")
SCOPES = ("openid", "profile", "email", "phone", "address", "offline_access")
GRANT_TYPES = ("authorization_code", "refresh_token")
DEV_SECRET = "dev-secret-{client_id}"  # the shipped clients.yaml's secrets, for local use only

FIELDS: dict[str, str] = {
    "client_id": "unique id the app sends as client_id",
    "name": "display name on the portal and the consent page",
    "description": "one line under the name on the portal home",
    "home_url": "where the portal home links to",
    "redirect_uris": "exact callback URLs (https, or http on loopback)",
    "post_logout_redirect_uris": "where RP-initiated logout may return",
    "backchannel_logout_uri": "receives logout tokens (Back-Channel Logout 1.0)",
    "frontchannel_logout_uri": "loaded in an iframe at logout (Front-Channel Logout 1.0)",
    "token_endpoint_auth_method": "client_secret_basic (default), client_secret_post, private_key_jwt, none",
    "client_secret_sha256": "hex SHA-256 of the secret (from `clients secret`)",
    "client_secret_env": "name of an environment variable holding the secret",
    "jwks": "public keys (JWKS) for private_key_jwt",
    "scopes": "scopes the app may ask for (default: openid profile email)",
    "first_party": "true: no consent screen",
    "require_mfa": "true: every sign-in for this app asks for MFA, trusted computer or not",
    "require_pkce": "true: every authorization request must carry a PKCE S256 code_challenge (public clients always)",
    "id_token_signed_response_alg": "RS256 (default) or ES256",
    "refresh_tokens": "offline_access (default: only when asked for), always, or never",
}


class ClientsFileError(ValueError):
    """clients.yaml has problems; the message lists all of them."""

    def __init__(self, path: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{path} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Client(ClientMixin):
    client_id: str
    name: str
    description: str = ""
    home_url: str | None = None
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None
    frontchannel_logout_uri: str | None = None
    token_endpoint_auth_method: str = "client_secret_basic"
    secret_sha256: str | None = field(default=None, repr=False)
    jwks: dict[str, Any] | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    first_party: bool = False
    require_mfa: bool = False
    require_pkce: bool = False  # public clients need PKCE whatever this says
    id_token_signed_response_alg: str = "RS256"
    refresh_tokens: str = "offline_access"

    # Authlib's ClientMixin
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OpenID Connect requires redirect_uri: never fall back to a registered one.
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match (RFC 9700 2.1)

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.secret_sha256 or not client_secret:
            return False
        return same(hashlib.sha256(client_secret.encode()).hexdigest(), self.secret_sha256)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    def public_keys(self) -> KeySet | None:
        return KeySet.import_key_set(self.jwks) if self.jwks else None


# -- validation ---------------------------------------------------------------


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _uri_problem(uri: Any, *, exact_query: bool = True) -> str | None:
    if not isinstance(uri, str) or not uri:
        return "must be a URL string"
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        return f"{uri!r} must not have a fragment"
    if parts.scheme == "https" and parts.netloc:
        return None
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return None
    return f"{uri!r} must be https (http only on a loopback address)"


def _check_uris(where: str, key: str, value: Any, problems: list[str]) -> None:
    if not isinstance(value, list):
        problems.append(f"{where}: field '{key}': must be a list of URLs")
        return
    for i, uri in enumerate(value):
        problem = _uri_problem(uri)
        if problem:
            problems.append(f"{where}: field '{key}[{i}]': {problem}")


def _check_client(where: str, entry: dict[str, Any], problems: list[str]) -> None:
    for key in entry:
        if key not in FIELDS:
            problems.append(f"{where}: field '{key}': unknown field (known: {', '.join(FIELDS)})")
    for key in ("client_id", "name"):
        if not isinstance(entry.get(key), str) or not entry.get(key).strip():
            problems.append(f"{where}: field '{key}': required, a non-empty string")
    for key in ("description", "home_url", "backchannel_logout_uri", "frontchannel_logout_uri"):
        if key in entry and not isinstance(entry[key], str):
            problems.append(f"{where}: field '{key}': must be a string")
    for key in ("home_url", "backchannel_logout_uri", "frontchannel_logout_uri"):
        if isinstance(entry.get(key), str) and (problem := _uri_problem(entry[key])):
            problems.append(f"{where}: field '{key}': {problem}")
    if "redirect_uris" not in entry or entry["redirect_uris"] == []:
        problems.append(f"{where}: field 'redirect_uris': required, at least one URL")
    else:
        _check_uris(where, "redirect_uris", entry["redirect_uris"], problems)
    if "post_logout_redirect_uris" in entry:
        _check_uris(where, "post_logout_redirect_uris", entry["post_logout_redirect_uris"], problems)
    for key in ("first_party", "require_mfa", "require_pkce"):
        if key in entry and not isinstance(entry[key], bool):
            problems.append(f"{where}: field '{key}': must be true or false")

    method = entry.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        problems.append(
            f"{where}: field 'token_endpoint_auth_method': unknown method {method!r} "
            f"(one of {', '.join(AUTH_METHODS)})"
        )
    has_secret = "client_secret_sha256" in entry or "client_secret_env" in entry
    if "client_secret_sha256" in entry and "client_secret_env" in entry:
        problems.append(
            f"{where}: field 'client_secret_env': give client_secret_sha256 or client_secret_env, not both"
        )
    if method in ("client_secret_basic", "client_secret_post") and not has_secret:
        problems.append(
            f"{where}: field 'client_secret_sha256': a confidential client ({method}) needs a secret"
        )
    if method in ("none", "private_key_jwt") and has_secret:
        problems.append(f"{where}: field 'client_secret_sha256': a {method} client must not have a secret")
    digest = entry.get("client_secret_sha256")
    if digest is not None and (
        not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)
    ):
        problems.append(f"{where}: field 'client_secret_sha256': must be 64 lowercase hex digits")
    env = entry.get("client_secret_env")
    if env is not None and not (isinstance(env, str) and os.environ.get(env)):
        problems.append(f"{where}: field 'client_secret_env': environment variable {env!r} is not set")
    if method == "private_key_jwt":
        try:
            KeySet.import_key_set(entry["jwks"])
        except Exception:
            problems.append(f"{where}: field 'jwks': private_key_jwt needs a valid public JWKS")

    scopes = entry.get("scopes", ["openid", "profile", "email"])
    if not isinstance(scopes, list) or "openid" not in scopes:
        problems.append(f"{where}: field 'scopes': a list that includes openid")
    else:
        for s in scopes:
            if s not in SCOPES:
                problems.append(f"{where}: field 'scopes': unknown scope {s!r} (one of {', '.join(SCOPES)})")
    alg = entry.get("id_token_signed_response_alg", "RS256")
    if alg not in SIGNING_ALGS:
        problems.append(
            f"{where}: field 'id_token_signed_response_alg': {alg!r} is not one of {', '.join(SIGNING_ALGS)}"
        )
    refresh = entry.get("refresh_tokens", "offline_access")
    if refresh not in ("offline_access", "always", "never"):
        problems.append(
            f"{where}: field 'refresh_tokens': {refresh!r} is not offline_access, always or never"
        )


def _shipped_secret(where: str, entry: dict[str, Any], issuer: str | None) -> str | None:
    """The development secret of the shipped clients.yaml (`dev-secret-<client_id>`)
    is public: refused on an https issuer, where real people sign in."""
    client_id = entry.get("client_id")
    if not (issuer or "").startswith("https://") or not isinstance(client_id, str):
        return None
    field, digest = "client_secret_sha256", entry.get("client_secret_sha256")
    if isinstance(entry.get("client_secret_env"), str):
        field, digest = "client_secret_env", os.environ.get(entry["client_secret_env"])
        digest = hashlib.sha256(digest.encode()).hexdigest() if digest else None
    if digest != hashlib.sha256(DEV_SECRET.format(client_id=client_id).encode()).hexdigest():
        return None
    return (
        f"{where}: field '{field}': is the development secret of the shipped clients.yaml "
        f"({DEV_SECRET.format(client_id=client_id)}), refused when OIDC_ISSUER is https; "
        f"make a new one with `flask --app oidc_provider clients secret {client_id}`"
    )


def validate(data: Any, issuer: str | None = None) -> list[str]:
    """Every problem of a parsed clients.yaml, each naming the client and field.
    `issuer`: OIDC_ISSUER, for the rules of a server on https."""
    if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
        return ["top level: expected a mapping with a 'clients' list"]
    problems: list[str] = []
    unknown = set(data) - {"clients"}
    if unknown:
        problems.append(f"top level: unknown keys {sorted(unknown)}")
    seen: set[str] = set()
    for i, entry in enumerate(data["clients"]):
        if not isinstance(entry, dict):
            problems.append(f"clients[{i}]: must be a mapping of fields")
            continue
        cid = entry.get("client_id")
        where = f"client '{cid}'" if isinstance(cid, str) and cid else f"clients[{i}]"
        if cid in seen:
            problems.append(f"{where}: field 'client_id': duplicate client_id")
        if isinstance(cid, str):
            seen.add(cid)
        _check_client(where, entry, problems)
        if problem := _shipped_secret(where, entry, issuer):
            problems.append(problem)
    return problems


def _build(entry: dict[str, Any]) -> Client:
    secret_sha256 = entry.get("client_secret_sha256")
    if "client_secret_env" in entry:
        secret_sha256 = hashlib.sha256(os.environ[entry["client_secret_env"]].encode()).hexdigest()
    return Client(
        client_id=entry["client_id"],
        name=entry["name"],
        description=entry.get("description", ""),
        home_url=entry.get("home_url"),
        redirect_uris=tuple(entry["redirect_uris"]),
        post_logout_redirect_uris=tuple(entry.get("post_logout_redirect_uris", ())),
        backchannel_logout_uri=entry.get("backchannel_logout_uri"),
        frontchannel_logout_uri=entry.get("frontchannel_logout_uri"),
        token_endpoint_auth_method=entry.get("token_endpoint_auth_method", "client_secret_basic"),
        secret_sha256=secret_sha256,
        jwks=entry.get("jwks"),
        scopes=tuple(entry.get("scopes", ("openid", "profile", "email"))),
        first_party=entry.get("first_party", False),
        require_mfa=entry.get("require_mfa", False),
        require_pkce=entry.get("require_pkce", False),
        id_token_signed_response_alg=entry.get("id_token_signed_response_alg", "RS256"),
        refresh_tokens=entry.get("refresh_tokens", "offline_access"),
    )


def read(path: str, issuer: str | None = None) -> tuple[Any, list[str]]:
    """Parse the file; return (data, problems) without raising."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        return None, [f"cannot read the file: {exc.strerror}"]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return None, [f"not valid YAML: {exc}"]
    return data, validate(data, issuer)


def load(path: str, issuer: str | None = None) -> dict[str, Client]:
    """The clients of a valid file by client_id; ClientsFileError otherwise."""
    data, problems = read(path, issuer)
    if problems:
        raise ClientsFileError(path, problems)
    return {c["client_id"]: _build(c) for c in data["clients"]}


def _checking_the_file() -> bool:
    """`flask … clients check|secret` must run on a broken file to report on it."""
    program = Path(sys.argv[0])
    return "flask" in (program.name, program.parent.name) and "clients" in sys.argv[1:]


def init_app(app: Flask) -> None:
    try:
        app.extensions["clients"] = load(app.config["OIDC_CLIENTS_FILE"], app.config["OIDC_ISSUER"])
    except ClientsFileError:
        if not _checking_the_file():
            raise
        app.extensions["clients"] = {}


def all_clients() -> dict[str, Client]:
    return current_app.extensions["clients"]


def query_client(client_id: str | None) -> Client | None:
    """Authlib's client lookup: a dict lookup, never the database."""
    if not isinstance(client_id, str):
        return None
    return current_app.extensions["clients"].get(client_id)


def new_secret() -> tuple[str, str]:
    """A new random client secret (256 bits) and the line for clients.yaml."""
    secret = secrets.token_urlsafe(32)
    return secret, f"client_secret_sha256: {hashlib.sha256(secret.encode()).hexdigest()}"
