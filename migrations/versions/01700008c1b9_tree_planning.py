"""tree planning: tree mode, stored plan, pinned costs and priorities

Revision ID: 01700008c1b9
Revises: 3f7161630922
Create Date: 2026-11-25 12:58:59.938261

The network gets its tree mode ("latency": privnet plans the STP costs and priorities from the
agents' RTTs; "seed": each link's and node's own values), its latest plan, and whether the agents
take a silent peer's port out of the bridge (fast failover, on). Links and nodes get a
"pinned" flag: the admin's value is used as is. Existing links whose cost is not the default 100
and nodes whose priority is not the default 32768 were set by their admins, so they start pinned.
The new node and link columns are added in place (SQLite copies no table, so nothing cascades); the
network table, which no other table refers to, is copied on SQLite for its check constraint.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '01700008c1b9'
down_revision = '3f7161630922'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('network', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tree_mode', sa.String(length=16), server_default='latency', nullable=False))
        batch_op.add_column(sa.Column('fast_failover', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('plan', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('plan_inputs', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('planned_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(op.f('ck_network_tree_mode_known'), "tree_mode IN ('latency', 'seed')")

    op.add_column('link', sa.Column('cost_pinned', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('node', sa.Column('priority_pinned', sa.Boolean(), server_default=sa.false(), nullable=False))
    bind = op.get_bind()
    bind.execute(sa.text('UPDATE link SET cost_pinned = :pinned WHERE cost <> 100'), {'pinned': True})
    bind.execute(sa.text('UPDATE node SET priority_pinned = :pinned WHERE bridge_priority <> 32768'), {'pinned': True})


def downgrade():
    # Plain DROP COLUMN (SQLite >= 3.35 does it in place): batch mode would copy the node table,
    # and dropping the old copy with foreign keys on would cascade-delete links and tokens.
    op.drop_column('node', 'priority_pinned')
    op.drop_column('link', 'cost_pinned')
    with op.batch_alter_table('network', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_network_tree_mode_known'), type_='check')
        batch_op.drop_column('planned_at')
        batch_op.drop_column('plan_inputs')
        batch_op.drop_column('plan')
        batch_op.drop_column('fast_failover')
        batch_op.drop_column('tree_mode')
