"""`make bench`: how fast the hot paths are, and how much memory they take.

Runs in-process (Flask's test client, a temporary SQLite database) so the
figures measure the provider, not the network. Prints operations per second
and the peak resident memory, and exits non-zero when a target is missed.
Targets are set for a 2-core machine with room to spare; timed assertions
stay out of the test suite on purpose (shared machines make them flaky).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from conftest import Clock, test_clients  # noqa: E402
from rp import RP, make_user  # noqa: E402

from oidc_provider import create_app  # noqa: E402
from oidc_provider.db import db  # noqa: E402

# operation: minimum operations per second
TARGETS = {
    "discovery": 1000,
    "jwks": 1000,
    "authorize (signed in, silent)": 100,
    "token (code → tokens, RS256 ID token)": 100,
    "userinfo": 300,
    "refresh (rotation)": 100,
}
PEAK_RSS_MB = 250


def build(folder: Path, clock: Clock):
    clients = folder / "clients.yaml"
    clients.write_text(yaml.safe_dump({"clients": test_clients()}))
    app = create_app(
        {
            "INSTANCE_PATH": str(folder / "instance"),
            "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
            "OIDC_ISSUER": "https://op.example.test",
            "OIDC_CLIENTS_FILE": str(clients),
            "OIDC_KEYS_DIR": str(folder / "keys"),
            "SECRET_KEY": "bench",
            "CLOCK": clock,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
        }
    )
    with app.app_context():
        db.create_all()
    return app


def rate(name: str, count: int, action) -> float:
    action()  # warm up
    started = time.perf_counter()
    for _ in range(count):
        action()
    per_second = count / (time.perf_counter() - started)
    target = TARGETS[name]
    print(
        f"{name:42} {per_second:9.0f}/s   target ≥ {target}/s   {'ok' if per_second >= target else 'MISSED'}"
    )
    return per_second >= target


def main() -> int:
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        app = build(Path(tmp), clock)
        user = make_user(app)
        clock.advance(seconds=30)
        rp = RP(app, app.test_client(), clock, user)
        rp.sign_in(rp.authorize())
        server = app.test_client()
        tokens = rp.tokens(scope="openid email offline_access")
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        refresh = [tokens["refresh_token"]]

        def token() -> None:
            assert rp.token(rp.code_from(rp.authorize())).status_code == 200

        def rotate() -> None:
            response = rp.refresh(refresh[0])
            refresh[0] = response.json["refresh_token"]

        results = [
            rate("discovery", 2000, lambda: server.get("/.well-known/openid-configuration")),
            rate("jwks", 2000, lambda: server.get("/jwks.json")),
            rate("authorize (signed in, silent)", 300, lambda: rp.code_from(rp.authorize())),
            rate("token (code → tokens, RS256 ID token)", 200, token),
            rate("userinfo", 500, lambda: server.get("/userinfo", headers=bearer)),
            rate("refresh (rotation)", 200, rotate),
        ]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{'peak resident memory':42} {peak:9.0f} MB  limit ≤ {PEAK_RSS_MB} MB   "
            f"{'ok' if peak <= PEAK_RSS_MB else 'MISSED'}"
        )
        app.extensions["logout_dispatcher"].stop()
    return 0 if all(results) and peak <= PEAK_RSS_MB else 1


if __name__ == "__main__":
    sys.exit(main())
