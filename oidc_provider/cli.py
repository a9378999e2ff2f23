"""`flask --app oidc_provider …` commands for admins and support.

Each command calls the same service a page calls; none has logic of its own.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from . import accounts, addresses, audit, mfa, mfa_support, outbox, provisioning, purge, recovery
from . import clients as clients_mod
from . import keys as keys_mod
from . import worker as worker_mod
from .db import db, now
from .models import AuditEvent, MfaMethod, Passkey, User

clients_cli = AppGroup("clients", help="The relying-party apps of clients.yaml.")
keys_cli = AppGroup(
    "keys", help="The signing keys (in the database; files in OIDC_KEYS_DIR to import/export)."
)
users_cli = AppGroup("users", help="People's accounts: activation, disable/enable, list.")
audit_cli = AppGroup("audit", help="The audit log of security events.")
mfa_cli = AppGroup("mfa", help="People's sign-in methods (MFA): show, support reset.")


@clients_cli.command("check")
def clients_check() -> None:
    """Report every problem of the clients file, or how many clients it has."""
    path = current_app.config["OIDC_CLIENTS_FILE"]
    data, problems = clients_mod.read(path, current_app.config["OIDC_ISSUER"])
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


@contextmanager
def _key_ring() -> Iterator[None]:
    """Keys commands end with the reason when the ring cannot be used (exit 1)."""
    try:
        yield
    except (keys_mod.KeyRingError, OSError) as error:
        click.echo(f"Error: {error}", err=True)
        raise SystemExit(1) from None


@keys_cli.command("list")
def keys_list() -> None:
    """Every key with its algorithm, state and when that state ends."""
    lifetime = timedelta(seconds=current_app.config["ID_TOKEN_LIFETIME"])
    with _key_ring():
        stored = keys_mod.load_keys()
    for key, state, until in keys_mod.key_states(stored, now(), lifetime):
        ends = f"until {until:%Y-%m-%d %H:%M} UTC" if until else ""
        click.echo(f"{key.kid}  {key.alg}  {state:9}  created {key.created_at:%Y-%m-%d %H:%M}  {ends}")


@keys_cli.command("rotate")
@click.option("--alg", type=click.Choice(keys_mod.ALGS), multiple=True, help="Default: every algorithm.")
def keys_rotate(alg: tuple[str, ...]) -> None:
    """Publish a new key now; it starts signing after OIDC_KEY_ROTATION_DELAY."""
    delay = timedelta(seconds=current_app.config["OIDC_KEY_ROTATION_DELAY"])
    lifetime = timedelta(seconds=current_app.config["ID_TOKEN_LIFETIME"])
    with _key_ring():  # a ring that never served yet gets its current keys first
        keys_mod.ensure_keys(now(), Path(current_app.config["OIDC_KEYS_DIR"]))
    for a in alg or keys_mod.ALGS:
        with _key_ring():
            new = keys_mod.rotate(a, now(), delay, lifetime)
        keys_mod.ring().refresh()
        audit.record("key_rotated", alg=a, kid=new.kid, signs_from=new.activates_at.isoformat())
        db.session.commit()
        click.echo(f"{a}: new key {new.kid} published; signs from {new.activates_at:%Y-%m-%d %H:%M} UTC")


@keys_cli.command("ensure")
def keys_ensure() -> None:
    """Make sure every algorithm has a signing key: import the key files of an
    older version (OIDC_KEYS_DIR) into an empty database, else generate."""
    folder = Path(current_app.config["OIDC_KEYS_DIR"])
    with _key_ring():
        done = keys_mod.ensure_keys(now(), folder)
    if done.imported:
        click.echo(f"imported {len(done.imported)} key(s) from {folder}: {', '.join(done.imported)}")
    if done.generated:
        click.echo(f"generated {len(done.generated)} key(s): {', '.join(done.generated)}")
    click.echo("signing keys ready in the database")


@keys_cli.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def keys_export(folder: Path) -> None:
    """Write every key to FOLDER as JWK files (private parts included)."""
    with _key_ring():
        written = keys_mod.export_keys(folder)
    audit.record(
        "keys_exported", folder=str(folder.resolve()), kids=[p.stem.split("-", 1)[1] for p in written]
    )
    db.session.commit()
    click.echo(f"wrote {len(written)} key file(s) to {folder}")
    click.echo(
        f"Warning: {folder} now holds the private signing keys in clear (files 0600). Anyone who reads "
        "them can sign tokens as this provider: keep them as secret as the database, delete them when done.",
        err=True,
    )


@keys_cli.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def keys_import(folder: Path) -> None:
    """Add the JWK files of FOLDER to the ring (keys it already has are skipped)."""
    with _key_ring():
        added, skipped = keys_mod.import_keys(folder)
    keys_mod.ring().refresh()
    if added:
        audit.record("keys_imported", folder=str(folder.resolve()), kids=added)
        db.session.commit()
    click.echo(f"imported {len(added)} key(s), skipped {len(skipped)} already in the ring")


def _echo_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Print rows as aligned columns under a header (the last column ragged)."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


def _account(email: str) -> User:
    try:
        return accounts.get_user(email)
    except accounts.NoAccount as missing:
        raise click.ClickException(str(missing)) from None


@users_cli.command("create")
@click.argument("email")
@click.option("--name", required=True, help="The person's full name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--activated", is_flag=True, help="Active at once (no activation email).")
def users_create(email: str, name: str, password_stdin: bool, activated: bool) -> None:
    """Create an account for EMAIL; the password is asked for (or read from stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create_user(name, email, password, activated=activated)
    except addresses.AddressRejected as refused:
        raise click.BadParameter(str(refused), param_hint="EMAIL") from None
    except (accounts.PasswordRejected, ValueError) as refused:
        raise click.ClickException(str(refused)) from None
    state = "active" if activated else "pending activation (activation link queued)"
    click.echo(f"created {user.email} ({state}); the first sign-in sets up MFA")


@users_cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True, help="Print only refused lines and the totals.")
def users_import(path: Path, quiet: bool) -> None:
    """Create accounts from a JSON Lines or CSV file (email, name, password or
    password_hash, activated, totp_secret); addresses that have an account are
    skipped. Exits 1 when a line was refused."""
    totals = {"created": 0, "skipped": 0, "refused": 0}
    for result in provisioning.import_people(provisioning.read_lines(path)):
        totals[result.outcome] += 1
        if not quiet or result.outcome == "refused":
            click.echo(str(result), err=result.outcome == "refused")
    click.echo(", ".join(f"{n} {outcome}" for outcome, n in totals.items()))
    if totals["refused"]:
        raise SystemExit(1)


@users_cli.command("resend-activation")
@click.argument("email")
def users_resend_activation(email: str) -> None:
    """Email a new activation link to EMAIL (ignores the per-address limit)."""
    mailed = accounts.resend_activation(_account(email).email, limited=False)
    if mailed.outcome is accounts.Sent.NOT_NEEDED:
        click.echo(f"{email} is already activated; nothing sent", err=True)
        return
    _report_mail(mailed.message_id, email, "activation link sent to", "could not send the mail to")


def _report_mail(message_id: int | None, email: str, sent: str, failed: str) -> None:
    """Send a queued mail now and say what the mail server answered; exit 1 when
    it will never arrive. A server that is away for now: the worker retries."""
    result = outbox.deliver_now(message_id) if message_id is not None else None
    if result is not None and result.status == outbox.SENT:
        click.echo(f"{sent} {email}")
    elif result is not None and result.status in (outbox.PENDING, None):
        click.echo(
            f"not sent to {email} yet ({result.error or 'a worker is sending it'}); "
            "it stays queued and is retried automatically",
            err=True,
        )
    else:
        reason = f" ({result.error})" if result is not None and result.error else ""
        click.echo(f"{failed} {email}{reason}: tell them another way", err=True)
        raise SystemExit(1)


@users_cli.command("disable")
@click.argument("email")
@click.option("--reason", required=True, help="Why; kept with the account and in the audit log.")
def users_disable(email: str, reason: str) -> None:
    """Disable EMAIL: no sign-in; its sessions and trusted computers end."""
    _account(email)
    user = accounts.disable(email, reason)
    click.echo(f"{user.email} disabled: {reason}")


@users_cli.command("enable")
@click.argument("email")
def users_enable(email: str) -> None:
    """Enable EMAIL again."""
    _account(email)
    user = accounts.enable(email)
    click.echo(f"{user.email} is {accounts.state(user)}")


@users_cli.command("list")
def users_list() -> None:
    """Every account: email, name, state, created."""
    rows = [
        (u.email, u.name, accounts.state(u), f"{u.created_at:%Y-%m-%d %H:%M}") for u in accounts.list_users()
    ]
    _echo_table(("email", "name", "state", "created (UTC)"), rows)


def _since(value: str | None) -> datetime | None:
    """2026-11-01, 2026-11-01T08:00, or an age: 7d, 12h, 30m (from db.now(), so
    parsed inside the command, where the app context is)."""
    if not value:
        return None
    units = dict(d="days", h="hours", m="minutes")  # suffix of an age: 7d, 12h, 30m
    try:
        if value[-1:] in units and value[:-1].isdigit():
            return now() - timedelta(**{units[value[-1]]: int(value[:-1])})
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        raise click.BadParameter(
            "use a date (2026-11-01) or an age (7d, 12h, 30m)", param_hint="--since"
        ) from None


@audit_cli.command("show")
@click.option("--user", "email", help="Only the events of this email address.")
@click.option("--since", help="A date (2026-11-01) or an age (7d, 12h, 30m).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1), help="The latest N events.")
def audit_show(email: str | None, since: str | None, limit: int) -> None:
    """The audit log, oldest to newest, as columns."""
    user = accounts.find_user(email) if email else None
    rows = audit.query(
        user_id=user.id if user else None,
        email=accounts.normalize_email(email) if email else None,
        since=_since(since),
        limit=limit,
    )
    _echo_table(
        ("time (UTC)", "event", "outcome", "email", "ip", "client", "details"),
        [_audit_row(r) for r in reversed(rows)],
    )


def _audit_row(r: AuditEvent) -> tuple[str, ...]:
    details = " ".join(f"{k}={v}" for k, v in sorted((r.details or {}).items()))
    return (
        f"{r.at:%Y-%m-%d %H:%M:%S}",
        r.event,
        r.outcome,
        r.email or "-",
        r.ip or "-",
        r.client_id or "-",
        details or "-",
    )


@mfa_cli.command("show")
@click.argument("email")
def mfa_show(email: str) -> None:
    """EMAIL's sign-in methods (masked, kind, added, last used, confirmed or
    pending), passkeys included, and how many recovery codes are left."""
    user = _account(email)
    methods = mfa.all_methods(user)
    if not methods and not user.passkeys:
        click.echo(f"{user.email} has no sign-in method: the next sign-in asks to set one up")
    else:
        _echo_table(
            ("method", "kind", "added (UTC)", "last used (UTC)", "state"),
            [_method_row(m) for m in methods] + [_passkey_row(p) for p in user.passkeys],
        )
    left = recovery.left(user)
    made = recovery.has_set(user)
    click.echo(f"recovery codes: {left} of {recovery.COUNT} left" if made else "recovery codes: none made")


def _method_row(m: MfaMethod) -> tuple[str, ...]:
    return (
        mfa.mask(m),
        m.kind,
        f"{m.created_at:%Y-%m-%d %H:%M}",
        f"{m.last_used_at:%Y-%m-%d %H:%M}" if m.last_used_at else "never",
        "confirmed" if m.confirmed_at else "pending (awaits its first code)",
    )


def _passkey_row(p: Passkey) -> tuple[str, ...]:
    return (
        p.name,
        "passkey (synced)" if p.backup_eligible else "passkey",
        f"{p.created_at:%Y-%m-%d %H:%M}",
        f"{p.last_used_at:%Y-%m-%d %H:%M}" if p.last_used_at else "never",
        "confirmed",
    )


@mfa_cli.command("reset")
@click.argument("email")
@click.option("--reason", required=True, help="Why (e.g. the ticket); kept in the audit log.")
def mfa_reset(email: str, reason: str) -> None:
    """Remove every sign-in method of EMAIL (passkeys and recovery codes too)
    and sign them out everywhere; the next sign-in asks them to set up a
    method again. They are emailed."""
    user = _account(email)
    if not reason.strip():
        raise click.BadParameter("say why, e.g. the support ticket", param_hint="--reason")
    done = mfa_support.support_reset(user, reason)
    click.echo(
        f"{user.email}: {done.methods_removed} sign-in method(s) removed, "
        f"{done.sessions_ended} session(s) ended, trusted computers forgotten, "
        f"{done.recovery_codes_removed} recovery code(s) removed; "
        "the next sign-in asks to set up a method"
    )
    _report_mail(done.message_id, user.email, "emailed", "could not email")


@click.command("worker")
@click.option("--once", is_flag=True, help="Send what is due now, run the due jobs, and exit.")
@with_appcontext
def worker_command(once: bool) -> None:
    """Send queued mail, SMS and logout tokens, and run the periodic jobs, until
    SIGTERM (the messages in hand are finished first). For OUTBOX_WORKER=external."""
    worker = worker_mod.of(current_app._get_current_object())  # type: ignore[attr-defined]
    if once:
        attempts = worker.run_until_idle()
        click.echo(f"{len(attempts)} message(s) attempted")
        return

    def stop(signum: int, frame: object) -> None:
        click.echo(f"outbox worker: {signal.Signals(signum).name}, finishing the messages in hand")
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"outbox worker {worker.id} started")
    worker.run()
    click.echo(f"outbox worker {worker.id} stopped")


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Delete expired and used rows (parked requests, codes, tokens, sessions,
    links, lockout counters, old deliveries and audit events); print how many
    per table. Safe to run from cron on every instance."""
    for table, count in purge.purge_expired(now()).items():
        click.echo(f"{table:20} {count}")


def init_app(app: Flask) -> None:
    for group in (clients_cli, keys_cli, users_cli, audit_cli, mfa_cli):
        app.cli.add_command(group)
    app.cli.add_command(purge_command)
    app.cli.add_command(worker_command)
