"""activation links keep the password they activate

Revision ID: 8e2f4a91c7d3
Revises: 8f3a2c6d1e47
Create Date: 2026-12-04 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '8e2f4a91c7d3'
down_revision = "8f3a2c6d1e47"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('account_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_hash', sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table('account_token', schema=None) as batch_op:
        batch_op.drop_column('password_hash')
