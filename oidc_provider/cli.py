"""`flask --app oidc_provider …` commands for admins and support.

Each command calls the same service a page calls; none has logic of its own.
"""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from . import clients as clients_mod
from . import keys as keys_mod
from .db import now

clients_cli = AppGroup("clients", help="The relying-party apps of clients.yaml.")
keys_cli = AppGroup("keys", help="The signing keys in OIDC_KEYS_DIR.")


@clients_cli.command("check")
def clients_check() -> None:
    """Report every problem of the clients file, or how many clients it has."""
    path = current_app.config["OIDC_CLIENTS_FILE"]
    data, problems = clients_mod.read(path)
    if problems:
        click.echo(f"{path}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        raise SystemExit(1)
    click.echo(f"{path}: {len(data['clients'])} client(s), no problems")


@clients_cli.command("secret")
@click.argument("client_id")
def clients_secret(client_id: str) -> None:
    """Make a new random secret for CLIENT_ID; print it once and the line for the file."""
    secret, line = clients_mod.new_secret()
    click.echo(f"New secret for {client_id} (shown once; give it to the app's operator):")
    click.echo(f"  {secret}")
    click.echo(f"Put this line in the '{client_id}' entry of clients.yaml, then restart:")
    click.echo(f"  {line}")


@clients_cli.command("list")
def clients_list() -> None:
    """The registered apps."""
    for c in clients_mod.all_clients().values():
        click.echo(f"{c.client_id:20} {c.token_endpoint_auth_method:20} {c.name}")


def _key_dir():
    return keys_mod.ring().directory


@keys_cli.command("list")
def keys_list() -> None:
    """Every key with its algorithm, state and when that state ends."""
    lifetime = timedelta(seconds=current_app.config["ID_TOKEN_LIFETIME"])
    for key, state, until in keys_mod.key_states(keys_mod.read_keys(_key_dir()), now(), lifetime):
        ends = f"until {until:%Y-%m-%d %H:%M} UTC" if until else ""
        click.echo(f"{key.kid}  {key.alg}  {state:9}  created {key.created_at:%Y-%m-%d %H:%M}  {ends}")


@keys_cli.command("rotate")
@click.option("--alg", type=click.Choice(keys_mod.ALGS), multiple=True, help="Default: every algorithm.")
def keys_rotate(alg: tuple[str, ...]) -> None:
    """Publish a new key now; it starts signing after OIDC_KEY_ROTATION_DELAY."""
    delay = timedelta(seconds=current_app.config["OIDC_KEY_ROTATION_DELAY"])
    lifetime = timedelta(seconds=current_app.config["ID_TOKEN_LIFETIME"])
    for a in alg or keys_mod.ALGS:
        new = keys_mod.rotate(_key_dir(), a, now(), delay, lifetime)
        click.echo(f"{a}: new key {new.kid} published; signs from {new.activates_at:%Y-%m-%d %H:%M} UTC")


@keys_cli.command("ensure")
def keys_ensure() -> None:
    """Generate the signing keys if there are none (done at start-up too)."""
    click.echo(f"signing keys ready in {_key_dir()}")


def init_app(app: Flask) -> None:
    for group in (clients_cli, keys_cli):
        app.cli.add_command(group)
