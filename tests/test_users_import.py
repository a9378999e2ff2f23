"""`flask --app oidc_provider users import FILE`: moving an existing user base
over. The people sign in afterwards with the password (or the hash) they had,
and the authenticator app they already set up keeps working."""

import json
from urllib.parse import urlsplit

import bcrypt
import pyotp

from oidc_provider import passwords
from oidc_provider.db import db
from oidc_provider.models import AuditEvent, MfaMethod, User

PASSWORD = "the password they had before 2024"
SECRET = pyotp.random_base32(32)


def jsonl(tmp_path, *people, name="people.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(p) + "\n" for p in people))
    return path


def sign_in(client, clock, email, password, secret=SECRET):
    """The portal's sign-in pages: password, then the authenticator's code; the last response."""
    response = client.post("/login", data={"email": email, "password": password})
    if urlsplit(response.location or "").path != "/login/code":
        return response
    clock.advance(seconds=30)
    return client.post("/login/code", data={"code": pyotp.TOTP(secret).at(clock.now)})


def test_imported_people_sign_in_with_their_old_hash_and_authenticator(app, runner, client, tmp_path, clock):
    argon2_hash = passwords.hash_password(PASSWORD)
    path = jsonl(
        tmp_path,
        {"email": "Willow@Example.com", "name": "Willow Rosenberg", "password_hash": argon2_hash,
         "activated": True, "totp_secret": SECRET},
    )
    result = runner.invoke(args=["users", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "line 1: created willow@example.com: activated, authenticator app" in result.output
    assert "1 created, 0 skipped, 0 refused" in result.output
    response = sign_in(client, clock, "willow@example.com", PASSWORD)
    assert response.status_code == 302 and urlsplit(response.location).path == "/"
    with app.app_context():
        [method] = db.session.scalars(db.select(MfaMethod)).all()
        assert SECRET not in method.secret  # encrypted at rest, like an enrolled app
        assert db.session.scalar(db.select(AuditEvent).filter_by(event="registered")).details == {"by": "import"}


def test_a_bcrypt_hash_signs_in_and_is_replaced_by_argon2id(app, runner, client, tmp_path, clock):
    old = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path = jsonl(
        tmp_path,
        {"email": "oz@example.com", "name": "Oz", "password_hash": old, "activated": True, "totp_secret": SECRET},
    )
    assert runner.invoke(args=["users", "import", str(path)]).exit_code == 0
    assert sign_in(client, clock, "oz@example.com", "not the password at all").status_code == 401
    response = sign_in(client, clock, "oz@example.com", PASSWORD)
    assert urlsplit(response.location).path == "/"
    with app.app_context():
        stored = db.session.scalar(db.select(User.password_hash).filter_by(email="oz@example.com"))
    assert stored.startswith("$argon2id$") and passwords.verify_password(stored, PASSWORD)


def test_a_plain_password_meets_the_policy_and_is_hashed(app, runner, tmp_path):
    path = jsonl(
        tmp_path,
        {"email": "anya@example.com", "name": "Anya", "password": "password1234", "activated": True},
        {"email": "tara@example.com", "name": "Tara", "password": PASSWORD, "activated": True},
    )
    result = runner.invoke(args=["users", "import", str(path)])
    assert result.exit_code == 1  # a line was refused; the others were imported
    assert "line 1: refused anya@example.com: This password is too common" in result.output
    assert "line 2: created tara@example.com: activated" in result.output
    with app.app_context():
        stored = db.session.scalar(db.select(User.password_hash).filter_by(email="tara@example.com"))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_import_is_idempotent(app, runner, tmp_path):
    path = jsonl(
        tmp_path,
        {"email": "faith@example.com", "name": "Faith", "password": PASSWORD},
        {"email": "kendra@example.com", "name": "Kendra", "password": PASSWORD},
    )
    assert runner.invoke(args=["users", "import", str(path)]).exit_code == 0
    again = runner.invoke(args=["users", "import", str(path)])
    assert again.exit_code == 0
    assert "line 1: skipped faith@example.com: already has an account" in again.output
    assert "0 created, 2 skipped, 0 refused" in again.output
    with app.app_context():
        assert db.session.query(User).count() == 2


def test_pending_accounts_cannot_sign_in_until_activated(app, runner, client, tmp_path, clock):
    path = jsonl(tmp_path, {"email": "cordelia@example.com", "name": "Cordelia", "password": PASSWORD})
    result = runner.invoke(args=["users", "import", str(path)])
    assert "created cordelia@example.com: pending activation" in result.output
    response = sign_in(client, clock, "cordelia@example.com", PASSWORD)
    assert response.status_code == 403 and b"not activated yet" in response.data


def test_bad_lines_are_refused_one_by_one_with_the_reason(app, runner, tmp_path):
    path = tmp_path / "people.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"email": "no-at-sign", "name": "X", "password": PASSWORD}),
                "{not json",
                json.dumps({"email": "harmony@example.com", "name": "", "password": PASSWORD}),
                json.dumps({"email": "jonathan@example.com", "name": "J", "password_hash": "md5:abc"}),
                json.dumps({"email": "andrew@example.com", "name": "A", "password": PASSWORD, "totp_secret": "0189"}),
                json.dumps({"email": "warren@example.com", "name": "W", "password": PASSWORD, "activated": "maybe"}),
                json.dumps({"email": "amy@example.com", "name": "Amy", "password": PASSWORD}),
            ]
        )
    )
    result = runner.invoke(args=["users", "import", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    for expected in (
        "line 1: refused no-at-sign: not an email address the sign-in page accepts",
        "line 2: refused -: not valid JSON",
        "line 3: refused harmony@example.com: a name of 1 to 200 characters is needed",
        "line 4: refused jonathan@example.com: password_hash is neither an argon2 nor a bcrypt hash",
        "line 5: refused andrew@example.com: totp_secret is not base32",
        "line 6: refused warren@example.com: activated must be true or false",
        "line 7: created amy@example.com",
        "1 created, 0 skipped, 6 refused",
    ):
        assert expected in result.output, result.output


def test_the_sign_in_form_and_the_import_agree_on_addresses(app, runner, client, tmp_path):
    """An address the import takes can be typed on the sign-in page, and one the page refuses is refused."""
    taken, refused = "buffy.summers@sunnydale.example.com", "buffy@localhost"
    path = jsonl(
        tmp_path,
        {"email": taken, "name": "B", "password": PASSWORD, "activated": True},
        {"email": refused, "name": "B", "password": PASSWORD, "activated": True},
    )
    result = runner.invoke(args=["users", "import", str(path)])
    assert f"created {taken}" in result.output and f"refused {refused}" in result.output
    assert client.post("/login", data={"email": taken, "password": PASSWORD}).status_code == 302
    page = client.post("/login", data={"email": refused, "password": PASSWORD})
    assert page.status_code == 422 and b"Enter an email address like" in page.data


def test_csv_with_a_header_row(app, runner, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(f"email,name,password,activated\nxander@example.com,Xander Harris,{PASSWORD},yes\n")
    result = runner.invoke(args=["users", "import", str(path)])
    assert result.exit_code == 0 and "line 2: created xander@example.com: activated" in result.output
