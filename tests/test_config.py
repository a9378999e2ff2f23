from pathlib import Path

import pytest
from conftest import deliver

from oidc_provider import config


def test_defaults_are_safe_for_local_use(tmp_path, monkeypatch):
    for name in ("OIDC_ISSUER", "SECRET_KEY", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    values = config.load(str(tmp_path))
    assert values["OIDC_ISSUER"] == "http://127.0.0.1:5000"
    assert values["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    assert values["AUTHORIZATION_CODE_LIFETIME"] == 60
    assert values["ACTIVATION_LIFETIME"] == 48 * 3600
    assert values["TRUSTED_COMPUTER_LIFETIME"] == 7 * 24 * 3600
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert values["SESSION_COOKIE_SECURE"] is False


def test_secret_key_is_generated_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = config.load(str(tmp_path))["SECRET_KEY"]
    second = config.load(str(tmp_path))["SECRET_KEY"]
    assert first == second and len(first) >= 48
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_environment_overrides_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("OIDC_ISSUER", "https://login.example.com/")
    monkeypatch.setenv("MAIL_USE_TLS", "yes")
    monkeypatch.setenv("ACTIVATION_LIFETIME", "3600")
    values = config.load(str(tmp_path))
    assert values["OIDC_ISSUER"] == "https://login.example.com"
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["MAIL_USE_TLS"] is True
    assert values["ACTIVATION_LIFETIME"] == 3600


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ACTIVATION_LIFETIME", "two days", "ACTIVATION_LIFETIME: expected a whole number"),
        ("MAIL_USE_SSL", "maybe", "MAIL_USE_SSL: expected true or false"),
        ("OIDC_ISSUER", "login.example.com", "OIDC_ISSUER: must be an http\\(s\\) URL"),
        ("OIDC_ISSUER", "https://x.example/?a=b", "OIDC_ISSUER: must be an http\\(s\\) URL"),
        ("ACCESS_TOKEN_LIFETIME", "0", "ACCESS_TOKEN_LIFETIME: must be positive"),
    ],
)
def test_invalid_values_are_refused_by_name(tmp_path, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=message):
        config.load(str(tmp_path))


def test_readme_documents_every_setting():
    text = (Path(config.__file__).parent.parent / "README.md").read_text()
    missing = [s.name for s in config.SETTINGS if f"`{s.name}`" not in text]
    assert missing == []


def test_the_database_outbox_and_secret_key_are_readable_by_the_provider_only(make_app, tmp_path):
    """I-03: the SQLite database, its WAL, the outbox and instance/ were
    world-readable (0644, folders 0755)."""
    instance = tmp_path / "fresh-instance"
    app = make_app(INSTANCE_PATH=str(instance), DATABASE_URL="", SECRET_KEY="", OUTBOX_DIR="")
    client = app.test_client()
    data = {"name": "Ann", "email": "ann@example.com", "password": "a long enough passphrase"}
    assert client.post("/register", data={**data, "confirm": data["password"]}).status_code == 303
    deliver(app)  # the outbox worker writes the activation mail to the folder
    database = instance / "portal.sqlite3"
    files = [database, Path(f"{database}-wal"), Path(f"{database}-shm"), instance / "secret_key"]
    files += list((instance / "outbox").glob("*.eml"))
    assert len(files) == 5
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600, path
    for folder in (instance, instance / "outbox"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
