"""the language a person chose: user.locale

Revision ID: f2a9c4e7b1d3
Revises: e4b7a2c9d1f0
Create Date: 2026-12-03 15:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f2a9c4e7b1d3'
down_revision = 'e4b7a2c9d1f0'
branch_labels = None
depends_on = None


def upgrade():
    # accounts from before keep no choice: their pages follow the browser
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=8), nullable=True))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('locale')
