"""parked requests bound to a browser and to who consented; indexes and a
change stamp for the purge

Revision ID: 8d6d56908415
Revises: b7c1d5e9f203
Create Date: 2026-12-04 10:00:00.000000

"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '8d6d56908415'
down_revision = "b7c1d5e9f203"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('login_transaction', schema=None) as batch_op:
        batch_op.add_column(sa.Column('browser_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('consented_sid', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_login_transaction_expires_at'), ['expires_at'], unique=False)

    with op.batch_alter_table('login_throttle', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed_at', sa.DateTime(), nullable=True))
    # rows from before: counted as changed now, so none is forgotten early
    at = datetime.now(timezone.utc).replace(tzinfo=None)
    op.execute(sa.text('UPDATE login_throttle SET changed_at = :at').bindparams(at=at))

    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_authorization_code_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_authorization_code_sid'), ['sid'], unique=False)

    with op.batch_alter_table('used_jti', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_used_jti_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('used_jti', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_used_jti_expires_at'))

    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_authorization_code_sid'))
        batch_op.drop_index(batch_op.f('ix_authorization_code_expires_at'))

    with op.batch_alter_table('login_throttle', schema=None) as batch_op:
        batch_op.drop_column('changed_at')

    with op.batch_alter_table('login_transaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_transaction_expires_at'))
        batch_op.drop_column('consented_sid')
        batch_op.drop_column('browser_hash')
