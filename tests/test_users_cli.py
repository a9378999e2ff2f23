"""`flask --app oidc_provider users create`: an admin makes an account that
then signs in through the hosted pages like any other."""

from urllib.parse import urlsplit

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
