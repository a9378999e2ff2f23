"""outbox: one queue for mail, SMS and back-channel logout; periodic jobs

Replaces logout_delivery. Its deliveries still pending are moved into the
outbox as their claims (client, URI, sub, sid), so each is retried with a
freshly minted logout token; the rest of logout_delivery (delivered or failed
rows) is history that the audit log keeps, and goes with the table.
Downgrading drops the outbox, with any message still queued in it.

Revision ID: 8f3b2c1d9a70
Revises: 8d6d56908415
Create Date: 2026-12-04 10:00:00.000000

"""
import base64
import json
from datetime import datetime, timezone

from alembic import context, op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '8f3b2c1d9a70'
down_revision = '8d6d56908415'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('outbox_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('payload', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.Column('claimed_by', sa.String(length=32), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('failed_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_outbox_message_user_id_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_message')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_message_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_outbox_message_kind_attempted', ['kind', 'last_attempt_at'], unique=False)

    op.create_table('scheduled_job',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('next_run_at', sa.DateTime(), nullable=False),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.Column('last_run_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduled_job'))
    )
    if not context.is_offline_mode():
        _move_pending_logout_deliveries()
    with op.batch_alter_table('logout_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_logout_delivery_next_attempt_at'))

    op.drop_table('logout_delivery')


def _move_pending_logout_deliveries():
    """Each pending delivery becomes an outbox message holding its claims,
    encrypted as the provider encrypts them (its SECRET_KEY: `flask db upgrade`
    runs in the app)."""
    bind = op.get_bind()
    pending = bind.execute(sa.text(
        "SELECT client_id, uri, logout_token, sid, created_at, attempts FROM logout_delivery "
        "WHERE delivered_at IS NULL AND failed_at IS NULL"
    )).fetchall()
    if not pending:
        return
    from oidc_provider import crypto, outbox

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for row in pending:
        body = row.logout_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload = {"client_id": row.client_id, "uri": row.uri, "sub": claims["sub"], "sid": row.sid or claims["sid"]}
        sealed = crypto.encrypt(outbox.PAYLOAD_KEY, json.dumps(payload, separators=(",", ":")).encode())
        bind.execute(
            sa.text(
                "INSERT INTO outbox_message (kind, label, status, payload, attempts, created_at, next_attempt_at) "
                "VALUES ('backchannel_logout', :label, 'pending', :payload, :attempts, :created_at, :now)"
            ),
            {"label": row.client_id, "payload": sealed, "attempts": row.attempts, "created_at": row.created_at, "now": now},
        )


def downgrade():
    op.create_table('logout_delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('logout_token', sa.Text(), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('failed_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_logout_delivery'))
    )
    with op.batch_alter_table('logout_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_logout_delivery_next_attempt_at'), ['next_attempt_at'], unique=False)

    op.drop_table('scheduled_job')
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_message_kind_attempted')
        batch_op.drop_index('ix_outbox_message_due')

    op.drop_table('outbox_message')
