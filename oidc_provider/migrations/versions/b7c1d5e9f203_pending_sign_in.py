"""pending sign-ins on the server, per-user security stamp

Revision ID: b7c1d5e9f203
Revises: 8e2f4a91c7d3
Create Date: 2026-12-04 11:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7c1d5e9f203'
down_revision = '8e2f4a91c7d3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('security_stamp', sa.String(length=64), server_default='', nullable=False))
    op.create_table('pending_sign_in',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('security_stamp', sa.String(length=64), nullable=False),
    sa.Column('tx_id', sa.String(length=64), nullable=True),
    sa.Column('next_url', sa.Text(), nullable=True),
    sa.Column('enrolled_method_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('consumed_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['enrolled_method_id'], ['mfa_method.id'], name=op.f('fk_pending_sign_in_enrolled_method_id_mfa_method'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_pending_sign_in_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_sign_in')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_pending_sign_in_token_hash'))
    )
    with op.batch_alter_table('pending_sign_in', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_sign_in_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_pending_sign_in_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('pending_sign_in', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_sign_in_user_id'))
        batch_op.drop_index(batch_op.f('ix_pending_sign_in_expires_at'))
    op.drop_table('pending_sign_in')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('security_stamp')
