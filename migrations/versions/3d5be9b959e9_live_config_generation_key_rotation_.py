"""live config: generation, key rotation, config sync

Revision ID: 3d5be9b959e9
Revises: d7f92bf7bc77
Create Date: 2026-11-25 10:36:38.581922

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3d5be9b959e9'
down_revision = 'd7f92bf7bc77'
branch_labels = None
depends_on = None


def _alter_node_table(change):
    """Run ``change(batch_op)`` on the node table, keeping every row that refers to a node.

    SQLite alters a column's nullability (or drops a column, in batch mode) by copying the table,
    and dropping the old copy with foreign keys on would cascade-delete every link, token and
    report: there the copy runs in its own transaction with foreign keys off, checked after.
    """
    if op.get_bind().dialect.name != 'sqlite':
        with op.batch_alter_table('node', schema=None) as batch_op:
            change(batch_op)
        return
    with op.get_context().autocommit_block():
        op.execute('PRAGMA foreign_keys = OFF')
        try:
            op.execute('BEGIN')
            with op.batch_alter_table('node', schema=None, recreate='always') as batch_op:
                change(batch_op)
            dangling = op.get_bind().execute(sa.text('PRAGMA foreign_key_check')).fetchall()
            if dangling:
                op.execute('ROLLBACK')
                raise RuntimeError(f'copying the node table would break foreign keys: {dangling[:5]}')
            op.execute('COMMIT')
        finally:
            op.execute('PRAGMA foreign_keys = ON')


def upgrade():
    with op.batch_alter_table('network', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('node_report', schema=None) as batch_op:
        batch_op.add_column(sa.Column('config_version', sa.String(length=64), nullable=True))

    def change(batch_op):
        batch_op.add_column(sa.Column('config_changed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('config_generation', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_node_config_generation'), ['config_generation'], unique=False)
        batch_op.add_column(sa.Column('key_rotation_nonce', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('key_rotation_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column('private_key_encrypted', existing_type=sa.LargeBinary(), nullable=True)

    _alter_node_table(change)


def downgrade():
    # A node whose host made its own key pair has no private key here; the old schema requires one.
    keyless = op.get_bind().execute(sa.text('SELECT count(*) FROM node WHERE private_key_encrypted IS NULL')).scalar()
    if keyless:
        raise RuntimeError(
            f'cannot downgrade: {keyless} node(s) have keys made by their hosts, which the app does not hold; '
            're-enroll or delete them first'
        )

    def change(batch_op):
        batch_op.alter_column('private_key_encrypted', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('key_rotation_requested_at')
        batch_op.drop_column('key_rotation_nonce')
        batch_op.drop_index(batch_op.f('ix_node_config_generation'))
        batch_op.drop_column('config_generation')
        batch_op.drop_column('config_changed_at')

    _alter_node_table(change)

    with op.batch_alter_table('node_report', schema=None) as batch_op:
        batch_op.drop_column('config_version')

    with op.batch_alter_table('network', schema=None) as batch_op:
        batch_op.drop_column('generation')
