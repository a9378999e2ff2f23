"""Authlib wiring: the authorization server, its grants and extensions, the
bearer-token protector, and `user_info()` -- the one place that says what a
relying party learns about a user.

Protocol behaviour comes from Authlib; the subclasses below only fill its
hooks (DESIGN.md, "Traps in the libraries", names each trap they avoid).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Request,
    UnsupportedResponseTypeError,
    grants,
)
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode
from flask import Flask, current_app
from flask import request as flask_request
from joserfc.jwk import KeySet
from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, contains_eager

from . import keys
from .clients import Client, query_client
from .db import db, new_token, now, timestamp, token_hash
from .models import AuthorizationCode, Consent, SsoSession, Token, UsedJti, User

# The token endpoint's statements, built once: SQLAlchemy then reuses their
# compiled form instead of building a statement and its cache key per request
# (the code exchange spent a third of its time there).
_CODE = (
    select(AuthorizationCode, User, SsoSession.ended_at, SsoSession.id)
    .join(User, User.id == AuthorizationCode.user_id)
    .outerjoin(SsoSession, SsoSession.sid == AuthorizationCode.sid)
    .where(AuthorizationCode.code_hash == bindparam("digest"), AuthorizationCode.client_id == bindparam("client_id"))
)
_EARLIER = aliased(Token)
_REFRESH = (  # with its person, and when its family began (the family's lifetime)
    select(Token, select(func.min(_EARLIER.issued_at)).where(_EARLIER.family == Token.family).scalar_subquery())
    .join(Token.user)
    .options(contains_eager(Token.user))
    .where(Token.refresh_token_hash == bindparam("digest"))
)
_FAMILY_START = select(func.min(Token.issued_at)).where(Token.family == bindparam("family"))
_SAVE_TOKEN = insert(Token.__table__)
_SAVE_CODE = insert(AuthorizationCode.__table__)
_USE_ONCE: dict[Any, Any] = {}  # per column: stamp it where it is still empty

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
SCOPES = ["openid", "profile", "email", "phone", "offline_access"]
CLAIMS = ["sub", "name", "email", "email_verified", "phone_number", "phone_number_verified"]
SCOPE_CLAIMS = {
    "profile": ("name",),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
}


# -- what an RP learns -----------------------------------------------------------


def claim_values(name: str, email: str, activated: bool, phone: str | None) -> dict[str, Any]:
    """Every claim this provider can say about a person, by its OIDC name."""
    values: dict[str, Any] = {"name": name, "email": email, "email_verified": activated}
    if phone:
        values.update(phone_number=phone, phone_number_verified=True)
    return values


def _claim_values(user: User) -> dict[str, Any]:
    phone = next((m.target for m in user.confirmed_methods if m.kind == "sms"), None)
    return claim_values(user.name, user.email, user.activated_at is not None, phone)


def scope_claims(sub: str, scope: str, values: dict[str, Any], extra: Sequence[str] = ()) -> dict[str, Any]:
    """`sub`, the claims of each scope granted, and `extra` claim names, from `values`."""
    names = [c for s in scope.split() for c in SCOPE_CLAIMS.get(s, ())] + list(extra)
    info = {"sub": sub}
    info.update({n: values[n] for n in names if n in values})
    return info


def claim_scopes(requested: dict[str, Any] | None) -> set[str]:
    """The scopes that carry the claims asked for one by one (the `claims` parameter)."""
    names = set(requested or {})
    return {scope for scope, claims in SCOPE_CLAIMS.items() if names & set(claims)}


def consented_scope(user_id: int, client_id: str) -> str | None:
    """The scopes a person allowed an app on its consent screen (None: never asked)."""
    consent = db.session.scalar(db.select(Consent).filter_by(user_id=user_id, client_id=client_id))
    return consent.scope if consent is not None else None


def permitted_claims(
    requested: dict[str, Any] | None, client: Client, consented: str | None
) -> dict[str, Any] | None:
    """The claims asked for one by one (OIDC Core 5.5) that an app may learn:
    those of a scope allowed for it in clients.yaml and, for an app that is not
    first-party, one the person allowed on its consent screen (which lists the
    scopes of requested claims too). Never more than the scopes would give."""
    if not requested:
        return None
    scopes = set(client.scopes)
    if not client.first_party:
        scopes &= set((consented or "").split())
    permitted = {claim for scope in scopes for claim in SCOPE_CLAIMS.get(scope, ())}
    return {name: value for name, value in requested.items() if name in permitted} or None


def user_info(
    user: User, scope: str, requested: dict[str, Any] | None = None, client: Client | None = None
) -> dict[str, Any]:
    """Claims for the userinfo endpoint: those of each granted scope, plus the
    requested ones (the `claims` parameter, OIDC Core 5.5) that `client` may
    learn now (`permitted_claims`: checked again, clients.yaml or consent may
    have changed since the code)."""
    extra: list[str] = []
    if client is not None:
        allowed = permitted_claims(requested, client, consented_scope(user.id, client.client_id))
        extra = [c for c in (allowed or {}) if c in CLAIMS]
    return scope_claims(user.sub, scope, _claim_values(user), extra)


# -- the authorization code -------------------------------------------------------


def issue_context(request: OAuth2Request) -> dict[str, Any]:
    """The sign-in the code vouches for (set by the authorize view as `request.sso`)."""
    sso = request.sso
    return {"auth_time": sso.auth_time, "acr": sso.acr, "amr": list(sso.amr), "sid": sso.sid}


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    @staticmethod
    def validate_authorization_redirect_uri(request: OAuth2Request, client: Client) -> str:
        # Authlib quotes the URI into error_description, where a `"` raises
        # ValueError (a 500): refuse an unregistered URI without quoting it.
        if request.payload.redirect_uri and not client.check_redirect_uri(request.payload.redirect_uri):
            raise InvalidRequestError("The redirect_uri is not registered for this client.")
        return grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)

    def validate_authorization_request(self) -> str:
        """Validated once per request: `get_consent_grant` validates, and
        `create_authorization_response` would again for the same grant."""
        if getattr(self, "_validated_redirect_uri", None) is None:
            self._validated_redirect_uri = super().validate_authorization_request()
        return self._validated_redirect_uri

    def generate_authorization_code(self) -> str:
        # 256 bits from the secrets module at once (Authlib draws 48 characters one by one)
        return new_token(32)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        """One INSERT, committed (nothing reads the row back in this request)."""
        data = request.payload.data
        at = now()
        values = dict(
            code_hash=token_hash(code),
            client_id=request.client.client_id,
            user_id=request.user.id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            claims=getattr(request, "claims_requested", None),
            created_at=at,
            expires_at=at + timedelta(seconds=current_app.config["AUTHORIZATION_CODE_LIFETIME"]),
            response_type="code",
            **issue_context(request),
        )
        db.session.connection().execute(_SAVE_CODE, values)
        db.session.commit()

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        # One query: the code, its person (kept for authenticate_user) and
        # whether the SSO session it was issued in is still open.
        found = db.session.execute(_CODE, {"digest": token_hash(code), "client_id": client.client_id}).first()
        if found is None:
            return None
        item, user, sso_ended_at, sso_id = found
        item.person = user  # not a column: this request's own
        if item.used_at is not None:
            revoke_tokens(Token.code_id == item.id)  # RFC 6749 4.1.2: a replayed code revokes
            db.session.commit()
            return None
        if item.expires_at <= now():  # Authlib never checks expiry itself
            return None
        if item.sid is None or sso_id is None or sso_ended_at is not None:
            return None  # signed out since (logout, account switch…): the code dies with its session
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Mark the code used: of two concurrent redemptions one wins, and the
        other revokes what the winner got, as a later replay does."""
        use_once(
            AuthorizationCode.used_at,
            authorization_code.id,
            "The code was already used.",
            revoke=Token.code_id == authorization_code.id,
        )

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        user = getattr(authorization_code, "person", None) or db.session.get(User, authorization_code.user_id)
        return user if user and user.is_active else None


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only (RFC 9700 2.1.1); required for public clients."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    # RFC 7636 4.2, matched whole: Authlib's pattern ends in `$`, which lets a final "\n" by
    CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        client = grant.request.client
        if data.get("code_challenge") and not self.CHALLENGE.fullmatch(data["code_challenge"]):
            raise InvalidRequestError("Invalid 'code_challenge': 43 to 128 characters A-Z a-z 0-9 - . _ ~.")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE needs code_challenge_method=S256; 'plain' is not supported.")
        if client.is_public and not data.get("code_challenge"):
            raise InvalidRequestError("Public clients must use PKCE (code_challenge with S256).")
        if client.require_pkce and not data.get("code_challenge"):
            raise InvalidRequestError("This app must use PKCE (code_challenge with S256).")
        super().validate_code_challenge(grant, redirect_uri)


class IdToken(OpenIDCode):
    """The ID token: signed by the current key of the client's algorithm."""

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # nonce replay is the RP's check (OIDC Core 15.5.2)

    def get_client_algorithm(self, client: Client) -> str:
        return client.id_token_signed_response_alg

    def resolve_client_private_key(self, client: Client) -> KeySet:
        return KeySet([keys.signing_key(client.id_token_signed_response_alg)])

    def get_encode_header(self, client: Client) -> dict[str, str]:
        key = keys.signing_key(client.id_token_signed_response_alg)
        return {"alg": client.id_token_signed_response_alg, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        issued = timestamp()
        return {
            "iss": current_app.config["OIDC_ISSUER"],
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": issued,
            "exp": issued + current_app.config["ID_TOKEN_LIFETIME"],
        }

    def get_authorization_code_claims(self, authorization_code: AuthorizationCode) -> dict[str, Any]:
        claims = super().get_authorization_code_claims(authorization_code)
        if authorization_code.sid:
            claims["sid"] = authorization_code.sid
        return claims

    def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
        # Merged last into the ID token: only `sub`; the rest is for /userinfo.
        return {"sub": user.sub}


class RefreshIdToken(IdToken):
    """A new ID token on the refresh grant (OIDC Core 12.2): the original
    sign-in's `auth_time`, `acr`, `amr` and `sid`, a new `iat`, no `nonce`."""

    def __call__(self, grant: Any) -> None:
        # Only the token hook: OpenIDCode's authorization-request hooks do not apply.
        grant.register_hook("after_create_token_response", self.process_token)

    def get_compatible_claims(self, request: OAuth2Request) -> dict[str, Any]:
        # Authlib 1.9 builds the base claims here; without a code it would stamp
        # auth_time = now. The sign-in travels on the refresh token's row.
        claims = super().get_compatible_claims(request)
        sign_in = request.refresh_token
        claims.update(auth_time=timestamp(sign_in.auth_time), acr=sign_in.acr, amr=list(sign_in.amr))
        if sign_in.sid:
            claims["sid"] = sign_in.sid
        return claims


# -- refresh tokens -----------------------------------------------------------------


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        # with its person, so `item.user` needs no query of its own
        found = db.session.execute(_REFRESH, {"digest": token_hash(refresh_token)}).first()
        if found is None:
            return None
        item, item.family_started = found  # not a column: this request's own
        if item.refresh_used_at is not None:
            revoke_tokens(Token.family == item.family)  # reuse of a rotated token: revoke the family
            db.session.commit()
            return None
        if item.revoked_at is not None or (item.refresh_expires_at and item.refresh_expires_at <= now()):
            return None
        return item

    def authenticate_user(self, refresh_token: Token) -> User | None:
        user = refresh_token.user
        return user if user.is_active else None

    def revoke_old_credential(self, refresh_token: Token) -> None:
        use_once(
            Token.refresh_used_at,
            refresh_token.id,
            "The refresh token was already used.",
            revoke=Token.family == refresh_token.family,
        )


def use_once(column: Any, row_id: int, message: str, *, revoke: Any) -> None:
    """Stamp a single-use credential's `column` now, atomically (one conditional
    UPDATE): of two concurrent uses exactly one succeeds. The other is a reuse
    like any later one, whichever request came from the thief: it revokes the
    tokens matching `revoke` (what the winner was given, committed by the time
    this UPDATE could run) and gets invalid_grant. The revocation is committed
    here, since the failed request's own work is rolled back."""
    statement = _USE_ONCE.get(column)
    if statement is None:
        table = column.class_.__table__
        statement = _USE_ONCE[column] = (
            update(table)
            .where(table.c.id == bindparam("row_id"), table.c[column.key].is_(None))
            .values({column.key: bindparam("at")})
        )
    # the session's own transaction; nothing reads the stamp back in this request
    used = db.session.connection().execute(statement, {"row_id": row_id, "at": now()})
    if used.rowcount != 1:
        db.session.rollback()  # this request's token is never given out
        revoke_tokens(revoke)
        db.session.commit()
        raise InvalidGrantError(message)


def revoke_tokens(*where: Any) -> None:
    """Revoke every token matching the conditions (caller commits)."""
    db.session.execute(update(Token).where(Token.revoked_at.is_(None), *where).values(revoked_at=now()))


def wants_refresh_token(client: Client, scope: str) -> bool:
    """Refresh tokens go to clients that ask for offline_access, or always per client."""
    if client.refresh_tokens == "always":
        return True
    return client.refresh_tokens == "offline_access" and "offline_access" in scope.split()


class TokenGenerator(BearerTokenGenerator):
    def generate(
        self,
        grant_type: str,
        client: Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        include = include_refresh_token and wants_refresh_token(client, scope or "")
        return super().generate(grant_type, client, user, scope, expires_in, include)


def save_token(token: dict[str, Any], request: OAuth2Request) -> None:
    """Store an issued token by its hashes; the caller commits on success."""
    at = now()
    code = request.authorization_code
    parent = request.refresh_token
    source = code or parent
    refresh = token.get("refresh_token")
    family = parent.family if parent else new_token(16)
    db.session.connection().execute(  # one INSERT: nothing reads the row back in this request
        _SAVE_TOKEN,
        dict(
            client_id=request.client.client_id,
            user_id=request.user.id,
            access_token_hash=token_hash(token["access_token"]),
            refresh_token_hash=token_hash(refresh) if refresh else None,
            scope=token["scope"],
            claims=getattr(source, "claims", None),
            issued_at=at,
            expires_at=at + timedelta(seconds=token["expires_in"]),
            refresh_expires_at=refresh_expiry(parent, at) if refresh else None,
            family=family,
            code_id=code.id if code else parent.code_id,
            sid=source.sid,
            auth_time=source.auth_time,
            acr=source.acr,
            amr=list(source.amr),
            offline="offline_access" in token["scope"].split(),
            token_type="Bearer",
        ),
    )


def refresh_expiry(parent: Token | None, at: datetime) -> datetime:
    """When a refresh token issued now expires: REFRESH_TOKEN_LIFETIME from now,
    but never beyond REFRESH_TOKEN_FAMILY_LIFETIME from the family's first token
    (rotation does not keep a sign-in alive for ever). `parent`: the refresh
    token it replaces (None: a new family)."""
    config = current_app.config
    started = getattr(parent, "family_started", None)
    if parent is not None and started is None:  # a parent read without its family's start
        started = db.session.scalar(_FAMILY_START, {"family": parent.family})
    started = started or at
    return min(
        at + timedelta(seconds=config["REFRESH_TOKEN_LIFETIME"]),
        started + timedelta(seconds=config["REFRESH_TOKEN_FAMILY_LIFETIME"]),
    )


# -- revocation, introspection, client authentication, bearer tokens ----------------


def find_token(token_string: str, hint: str | None = None) -> Token | None:
    digest = token_hash(token_string)
    return db.session.scalar(
        db.select(Token).where(or_(Token.access_token_hash == digest, Token.refresh_token_hash == digest))
    )


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        # RFC 7009 2.1: revoking a refresh token ends its whole grant.
        revoke_tokens(Token.family == token.family) if token.refresh_token_hash else revoke_tokens(
            Token.id == token.id
        )
        db.session.commit()


@dataclass(frozen=True)
class Presented:
    """A token string as presented for introspection: its row, and which of the
    row's two tokens it is."""

    token: Token
    is_refresh: bool

    @property
    def active(self) -> bool:
        """RFC 7662 2.2 `active`; a refresh token by its own lifetime and rotation."""
        if self.token.is_revoked():
            return False
        if self.is_refresh:
            expires = self.token.refresh_expires_at
            return self.token.refresh_used_at is None and (expires is None or expires > now())
        return not self.token.is_expired()


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Presented | None:
        token = find_token(token_string, token_type_hint)
        if token is None:
            return None
        return Presented(token, token.refresh_token_hash == token_hash(token_string))

    def check_permission(self, presented: Presented, client: Client, request: OAuth2Request) -> bool:
        return presented.token.client_id == client.client_id

    def create_introspection_payload(self, presented: Presented | None) -> dict[str, Any]:
        if presented is None or not presented.active:
            return {"active": False}
        return self.introspect_token(presented)

    def introspect_token(self, presented: Presented) -> dict[str, Any]:
        token = presented.token
        expires = token.refresh_expires_at if presented.is_refresh else token.expires_at
        return describe_active_token(
            token.client_id, token.scope, token.user.sub, expires, token.issued_at, presented.is_refresh
        )


def describe_active_token(
    client_id: str, scope: str, sub: str, expires: datetime | None, issued: datetime, is_refresh: bool
) -> dict[str, Any]:
    """RFC 7662 2.2: what introspection says of an active token."""
    described = {
        "active": True,
        "client_id": client_id,
        "scope": scope,
        "sub": sub,
        "aud": client_id,
        "iss": current_app.config["OIDC_ISSUER"],
        "exp": timestamp(expires),
        "iat": timestamp(issued),
    }
    if not is_refresh:
        described["token_type"] = "Bearer"  # RFC 6749 7.1: access tokens have a type
    return described


class PrivateKeyJwt(JWTBearerClientAssertion):
    """`private_key_jwt` client authentication (OIDC Core 9), keys from clients.yaml."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self) -> list[str]:
        # From the issuer only: the request's own URL follows its Host header, and
        # would let an assertion made for another server be replayed here.
        issuer = current_app.config["OIDC_ISSUER"]
        return [issuer, f"{issuer}/token"]

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Each assertion once (RFC 7523 3): its `jti`, by its SHA-256 (any length
        fits), is kept until `exp`. What a client may sign is an answer, never a
        500: an `exp` beyond dates, or a `jti` another instance took a moment ago."""
        if not isinstance(jti, str):
            return False
        key = (token_hash(jti), claims["sub"])
        if db.session.get(UsedJti, key):
            return False
        try:
            expires = datetime.fromtimestamp(claims["exp"], UTC).replace(tzinfo=None)
        except (OverflowError, ValueError, OSError):
            return False
        db.session.add(UsedJti(jti=key[0], client_id=key[1], expires_at=expires))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return False
        return True

    def resolve_client_public_key(self, client: Client) -> KeySet | None:
        return client.public_keys()


def client_secret_basic(query_client: Any, request: OAuth2Request) -> Client | None:
    """Authlib's `client_secret_basic`, where credentials that do not decode as
    UTF-8 are wrong credentials (401 invalid_client), not a UnicodeDecodeError."""
    try:
        return authenticate_client_secret_basic(query_client, request)
    except UnicodeDecodeError:
        return None


class BearerToken(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> Token | None:
        return db.session.scalar(db.select(Token).filter_by(access_token_hash=token_hash(token_string)))


class Protector(ResourceProtector):
    """Also accepts the access token in a form body (RFC 6750 2.2), as userinfo must."""

    def parse_request_authorization(self, request: Any) -> tuple[Any, str]:
        body_token = flask_request.form.get("access_token") if flask_request.method == "POST" else None
        if body_token and not flask_request.headers.get("Authorization"):
            return self.get_token_validator("bearer"), body_token
        return super().parse_request_authorization(request)


class Issuer(IssuerParameter):
    def get_issuer(self) -> str:
        return current_app.config["OIDC_ISSUER"]


# -- the server ------------------------------------------------------------------


class Server(AuthorizationServer):
    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        # A request already read (ReadRequest) is used as it is.
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)

    def get_authorization_grant(self, request: OAuth2Request) -> Any:
        """The code grant; any other response_type is refused with a fixed
        description (Authlib's carries the raw value, and a `"` in it raises
        ValueError: a 500). The error redirects only to a registered URI."""
        if AuthorizationCodeGrant.check_authorization_endpoint(request):
            return super().get_authorization_grant(request)
        client = self.query_client(request.payload.client_id)
        uri = request.payload.redirect_uri
        trusted = uri if client is not None and uri and client.check_redirect_uri(uri) else None
        raise UnsupportedResponseTypeError(
            request.payload.response_type, "Only response_type=code is supported.", redirect_uri=trusted
        )


class ReadRequest(OAuth2Request):
    """A request whose parameters were read already: a parked authorization
    request (its stored query, GET) or a request read below Flask (fastpath.py:
    a signed-in authorize, GET; a token request's form, POST)."""

    def __init__(self, method: str, uri: str, params: dict[str, str], authorization: str | None = None):
        super().__init__(method, uri, headers={"Authorization": authorization} if authorization else {})
        self.payload = BasicOAuth2Payload(params)
        self._params = params

    @property
    def args(self) -> dict[str, str]:
        return self._params if self.method == "GET" else {}

    @property
    def form(self) -> dict[str, str]:
        return self._params if self.method == "POST" else {}


def init_app(app: Flask) -> None:
    server = Server()
    server.init_app(app, query_client=query_client, save_token=save_token)
    expires = {
        "authorization_code": app.config["ACCESS_TOKEN_LIFETIME"],
        "refresh_token": app.config["ACCESS_TOKEN_LIFETIME"],
    }
    server.register_token_generator(
        "default",
        TokenGenerator(
            lambda **kw: new_token(32),
            lambda **kw: new_token(32),
            lambda client, grant_type: expires.get(grant_type, BearerTokenGenerator.DEFAULT_EXPIRES_IN),
        ),
    )
    server.register_grant(
        AuthorizationCodeGrant, [IdToken(require_nonce=False), S256CodeChallenge(required=True)]
    )
    server.register_grant(RefreshTokenGrant, [RefreshIdToken()])
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_client_auth_method("client_secret_basic", client_secret_basic)
    server.register_client_auth_method("private_key_jwt", PrivateKeyJwt())
    server.register_extension(Issuer())
    protector = Protector()
    protector.register_token_validator(BearerToken())
    app.extensions["oauth_server"] = server
    app.extensions["oauth_protector"] = protector


def authorization_server() -> Server:
    return current_app.extensions["oauth_server"]


def protector() -> Protector:
    return current_app.extensions["oauth_protector"]
