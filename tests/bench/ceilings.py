"""The physical ceilings of the provider's core, measured in the same run:
argon2id verifications per second with the product's parameters (a sign-in
needs one), and RS256 signatures per second (an ID token needs one)."""

from __future__ import annotations

import subprocess
import sys

ARGON2 = """
import time
from oidc_provider.passwords import HASHER
stored = HASHER.hash("a password of ordinary length 42")
n, start = 0, time.perf_counter()
while time.perf_counter() - start < {seconds}:
    HASHER.verify(stored, "a password of ordinary length 42"); n += 1
print(n / (time.perf_counter() - start))
"""

RS256 = """
import time
from joserfc import jwt
from joserfc.jwk import RSAKey
key = RSAKey.generate_key(2048, parameters={{"alg": "RS256"}})
claims = {{"iss": "https://login.example.com", "sub": "x" * 22, "aud": "app", "exp": 2000000000, "iat": 1900000000,
          "auth_time": 1900000000, "nonce": "n" * 22, "acr": "urn:login-portal:acr:mfa", "amr": ["pwd", "otp", "mfa"]}}
n, start = 0, time.perf_counter()
while time.perf_counter() - start < {seconds}:
    jwt.encode({{"alg": "RS256", "kid": "k"}}, claims, key); n += 1
print(n / (time.perf_counter() - start))
"""


def measure(cpu: str, seconds: float = 3.0) -> dict[str, float]:
    """Operations per second of each ceiling on `cpu`."""
    out = {}
    for name, code in (("argon2id_verify", ARGON2), ("rs256_sign", RS256)):
        done = subprocess.run(
            ["taskset", "-c", cpu, sys.executable, "-c", code.format(seconds=seconds)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        out[name] = float(done.stdout.strip())
    return out
