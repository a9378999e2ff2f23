"""signing keys in the database, shared by every instance

Revision ID: a7c41e9b3d52
Revises: 5d1e0a7c4b21
Create Date: 2026-12-04 09:00:00.000000

Keys of an older version (JWK files in OIDC_KEYS_DIR) are imported by
`flask --app oidc_provider keys ensure`, or at the first need, not here.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c41e9b3d52'
down_revision = '5d1e0a7c4b21'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('signing_key',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=10), nullable=False),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('private_jwk', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('activates_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_signing_key'))
    )


def downgrade():
    op.drop_table('signing_key')
