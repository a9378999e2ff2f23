"""`flask --app oidc_provider users create`: an admin makes an account that
then signs in through the hosted pages like any other."""

import json
from urllib.parse import urlsplit

import pytest

from oidc_provider import mfa
from oidc_provider.db import db
from oidc_provider.models import User

PASSWORD = "a long enough passphrase 2026"


def test_users_create_activated_then_the_person_signs_in_and_enrols(app, runner, client):
    result = runner.invoke(
        args=[
            "users",
            "create",
            "giles@example.com",
            "--name",
            "Rupert Giles",
            "--password-stdin",
            "--activated",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "created giles@example.com (active)" in result.output
    response = client.post("/login", data={"email": "Giles@Example.com", "password": PASSWORD})
    assert urlsplit(response.location).path == "/mfa/setup"  # first sign-in: enrol MFA first


def test_users_create_pending_sends_an_activation_link(app, runner):
    result = runner.invoke(
        args=["users", "create", "dawn@example.com", "--name", "Dawn", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0 and "pending activation" in result.output
    with app.app_context():
        assert db.session.query(User).filter_by(email="dawn@example.com").one().activated_at is None


def test_users_create_refuses_a_weak_password_and_a_taken_address(runner):
    weak = runner.invoke(
        args=["users", "create", "spike@example.com", "--name", "Spike", "--password-stdin"], input="short\n"
    )
    assert weak.exit_code == 1 and "Error:" in weak.output and "Traceback" not in weak.output
    args = ["users", "create", "spike@example.com", "--name", "Spike", "--password-stdin", "--activated"]
    assert runner.invoke(args=args, input=PASSWORD + "\n").exit_code == 0
    again = runner.invoke(args=args, input=PASSWORD + "\n")
    assert again.exit_code == 1 and "already has an account" in again.output


# -- one address rule: what `users create` accepts, the sign-in form accepts ------------------


def create(runner, address: str, *extra: str):
    args = ["users", "create", address, "--name", "Tara Maclay", "--password-stdin", "--activated", *extra]
    return runner.invoke(args=args, input=PASSWORD + "\n")


@pytest.mark.parametrize("address", ["tara@example.test", "Tara.Maclay@Example.COM", "tara@bücher.de"])
def test_an_address_users_create_accepts_can_sign_in(app, runner, client, address):
    """Black-box finding: `users create` accepted name@example.test, which the
    sign-in form then refused ('Enter an email address like…'): the account
    could never sign in."""
    result = create(runner, address)
    assert result.exit_code == 0, result.output
    response = client.post("/login", data={"email": address, "password": PASSWORD})
    assert response.status_code == 302 and urlsplit(response.location).path == "/mfa/setup"


@pytest.mark.parametrize(
    "address", ["tara@localhost", "tara@corp.local", "tara maclay@example.com", "tara@", "tara.example.com"]
)
def test_an_address_the_sign_in_form_refuses_users_create_refuses(app, runner, client, address):
    page = client.post("/login", data={"email": address, "password": PASSWORD})
    assert page.status_code == 422 and "Enter an email address like name@example.com." in page.get_data(
        as_text=True
    )
    result = create(runner, address)
    assert result.exit_code == 2 and "Enter an email address like name@example.com." in result.output
    assert "Traceback" not in result.output
    with app.app_context():
        assert db.session.query(User).count() == 0


def test_every_entry_point_stores_the_address_in_one_form(app, runner, client):
    """Registration, the command line and an email MFA method agree on the
    address a person typed in capitals."""
    assert create(runner, "Tara@Example.TEST").exit_code == 0
    again = create(runner, "tara@example.test")
    assert again.exit_code == 1 and "already has an account" in again.output
    with app.app_context():
        tara = db.session.query(User).one()
        assert tara.email == "tara@example.test"
        assert mfa.start_enrolment(tara, "email", " Codes@Example.TEST ").target == "codes@example.test"
        with pytest.raises(mfa.MfaError, match="Enter an email address like"):
            mfa.start_enrolment(tara, "email", "codes@corp.local")
    registered = client.post(
        "/register",
        data={"name": "T", "email": "TARA@example.test", "password": PASSWORD, "confirm": PASSWORD},
    )
    assert registered.status_code == 303  # the same answer as for a new address
    with app.app_context():
        assert db.session.query(User).count() == 1


def test_users_import_follows_the_same_address_and_name_rules(app, runner, client, tmp_path):
    people = tmp_path / "people.jsonl"
    lines = [
        {"email": "Willow@Example.TEST", "name": "Willow", "password": PASSWORD, "activated": True},
        {"email": "oz@corp.local", "name": "Oz", "password": PASSWORD},
        {"email": "anya@example.com", "name": "Anya\u202eJenkins", "password": PASSWORD},
    ]
    people.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(args=["users", "import", str(people)])
    assert "line 1: created willow@example.test" in result.output
    assert "line 2: refused oz@corp.local: not an email address the sign-in page accepts" in result.output
    assert "line 3: refused anya@example.com: Your name cannot contain" in result.output
    response = client.post("/login", data={"email": "willow@example.test", "password": PASSWORD})
    assert urlsplit(response.location).path == "/mfa/setup"
