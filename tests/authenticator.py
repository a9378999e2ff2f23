"""A software WebAuthn authenticator for the tests, acting as a browser and its
platform authenticator would: it makes an ES256 key pair per passkey and
answers `navigator.credentials.create()` and `.get()` with the JSON a
browser sends (base64url fields). CBOR comes from the cbor2 library; the
portal's checks come from the `webauthn` library, never from this file.

`origin` is the page the browser says it is on: another origin stands for a
phishing page relaying the portal's options."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import struct
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40  # authenticator data flags (WebAuthn 6.1)
OPTIONS = re.compile(rb'<script type="application/json" id="passkey-options">(.*?)</script>', re.S)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def options_in(html: bytes) -> dict:
    """The passkey options a portal page hands to its script."""
    found = OPTIONS.search(html)
    assert found, "the page offers no passkey"
    return json.loads(found.group(1))


@dataclass
class Credential:
    id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0


@dataclass
class Authenticator:
    """One device: it verifies its owner (`verifies_user`), may sync its
    passkeys (`synced`: backup eligible and backed up) and keeps a signature
    counter unless `counter` is False."""

    verifies_user: bool = True
    synced: bool = False
    counter: bool = True
    credentials: list[Credential] = field(default_factory=list)

    def _flags(self, attested: bool = False) -> int:
        flags = UP | (UV if self.verifies_user else 0) | ((BE | BS) if self.synced else 0)
        return flags | (AT if attested else 0)

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        return json.dumps(data).encode()

    def create(self, options: dict, origin: str) -> str:
        """The JSON of a new passkey for `options` (attestation "none")."""
        rp_id = options["rp"]["id"]
        excluded = {c["id"] for c in options.get("excludeCredentials", [])}
        assert not any(b64(c.id) in excluded for c in self.credentials if c.rp_id == rp_id), "already here"
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        cose = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        credential = Credential(secrets.token_bytes(32), key, rp_id, unb64(options["user"]["id"]))
        self.credentials.append(credential)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags(attested=True)])
            + struct.pack(">I", 0)
            + bytes(16)  # AAGUID: none given
            + struct.pack(">H", len(credential.id))
            + credential.id
            + cbor2.dumps(cose)
        )
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": b64(credential.id),
                "rawId": b64(credential.id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64(client_data),
                    "attestationObject": b64(attestation),
                    "transports": ["internal"],
                },
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
            }
        )

    def get(self, options: dict, origin: str, rp_id: str | None = None) -> str:
        """The JSON of an assertion for `options`: the first passkey allowed
        (any of this site's for a discoverable request)."""
        rp_id = rp_id or options["rpId"]
        allowed = {c["id"] for c in options.get("allowCredentials", [])}
        credential = next(
            c for c in self.credentials if c.rp_id == rp_id and (not allowed or b64(c.id) in allowed)
        )
        if self.counter:
            credential.sign_count += 1
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags()])
            + struct.pack(">I", credential.sign_count)
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": b64(credential.id),
                "rawId": b64(credential.id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64(client_data),
                    "authenticatorData": b64(auth_data),
                    "signature": b64(signature),
                    "userHandle": b64(credential.user_handle),
                },
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
            }
        )
