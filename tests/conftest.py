"""Fixtures: a fresh provider on a temporary database, keys and clients file,
a movable clock, and helpers that act like a user or an RP would."""

import warnings

import authlib.deprecate

warnings.filterwarnings("error", category=authlib.deprecate.AuthlibDeprecationWarning)

# smtp_server, mail_app; rp, user; postgres_url, pg_app; redis_url
pytest_plugins = ["mailserver", "rp", "pgserver", "redisserver"]

import hashlib  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

from oidc_provider import create_app  # noqa: E402
from oidc_provider.db import db  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """A clock tests move by hand; the app reads it through config CLOCK."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, **kw: float) -> None:
        self.now += timedelta(seconds=seconds, **kw)


SECRETS = {
    "client": "client-secret-for-the-conformance-style-tests-0001",
    "client2": "client2-secret-for-the-conformance-style-tests-002",
    "client-post": "client-post-secret-for-the-conformance-tests-0003",
    "third-party": "third-party-secret-for-consent-tests-00000000004",
}


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def test_clients() -> list[dict]:
    """Clients like the conformance suite registers, plus a public and a third-party app."""
    cb = "https://rp.example.test"
    common = {
        "scopes": ["openid", "profile", "email", "phone", "address", "offline_access"],
        "first_party": True,
        "post_logout_redirect_uris": [f"{cb}/post_logout_redirect"],
    }
    return [
        {
            "client_id": "client",
            "name": "Conformance client",
            "redirect_uris": [f"{cb}/callback"],
            "client_secret_sha256": sha(SECRETS["client"]),
            "backchannel_logout_uri": f"{cb}/backchannel_logout",
            **common,
        },
        {
            "client_id": "client2",
            "name": "Second client",
            "redirect_uris": [f"{cb}/callback2"],
            "client_secret_sha256": sha(SECRETS["client2"]),
            **common,
        },
        {
            "client_id": "client-post",
            "name": "Post client",
            "redirect_uris": [f"{cb}/callback"],
            "token_endpoint_auth_method": "client_secret_post",
            "client_secret_sha256": sha(SECRETS["client-post"]),
            **common,
        },
        {
            "client_id": "public-app",
            "name": "Public app",
            "redirect_uris": ["http://127.0.0.1:7000/cb"],
            "token_endpoint_auth_method": "none",
            **common,
        },
        {
            "client_id": "third-party",
            "name": "Third-party app",
            "description": "Not ours",
            "redirect_uris": [f"{cb}/tp"],
            "client_secret_sha256": sha(SECRETS["third-party"]),
            "scopes": ["openid", "profile", "email"],
        },
        {
            "client_id": "mfa-app",
            "name": "Strict app",
            "redirect_uris": [f"{cb}/strict"],
            "client_secret_sha256": sha(SECRETS["client"]),
            "require_mfa": True,
            **common,
        },
        {
            "client_id": "es256-app",
            "name": "ES256 app",
            "redirect_uris": [f"{cb}/es256"],
            "client_secret_sha256": sha(SECRETS["client"]),
            "id_token_signed_response_alg": "ES256",
            **common,
        },
    ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def deliver(app) -> list:
    """Run the app's outbox worker in this thread until no message is due (what
    the worker thread of a serving process does by itself): the mail and SMS
    a request queued are then at the SMTP server, the gateway or the folder."""
    return app.extensions["outbox_worker"].run_until_idle()


@pytest.fixture
def make_app(tmp_path, clock, request):
    """Build an app; extra settings override the defaults. Its queued messages
    are sent when a test reads the `smtp_server` fixture's inbox (`deliver`);
    OUTBOX_WORKER=thread gives it the worker thread of a serving process."""
    made = []

    def _make(clients: list[dict] | None = None, **settings):
        clients_file = tmp_path / "clients.yaml"
        clients_file.write_text(yaml.safe_dump({"clients": clients or test_clients()}))
        config = {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'test.sqlite3'}",
            "OIDC_ISSUER": "https://op.example.test",
            "OIDC_CLIENTS_FILE": str(clients_file),
            "OIDC_KEYS_DIR": str(tmp_path / "keys"),
            "SECRET_KEY": "test-secret-key",
            "CLOCK": clock,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "OUTBOX_WORKER": "external",  # tests send the queue by calling `deliver`
            "TIME_ZONE": "UTC",  # the times tests assert; tests of the default zone set it
            **settings,
        }
        app = create_app(config)
        with app.app_context():
            db.create_all()
        made.append(app)
        if "smtp_server" in request.fixturenames:
            request.getfixturevalue("smtp_server").before_reading.append(lambda: deliver(app))
        return app

    yield _make
    for app in made:
        app.extensions["outbox_worker"].stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()
