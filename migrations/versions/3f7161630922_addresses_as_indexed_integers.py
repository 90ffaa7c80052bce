"""addresses as indexed integers

Revision ID: 3f7161630922
Revises: 3d5be9b959e9
Create Date: 2026-11-25 11:44:49.254618

The node's underlay and overlay addresses are also kept as integers, with unique indexes, so the
database finds the lowest free address itself. Added as nullable columns and unique indexes, which
SQLite can do in place (no copy of the node table), then filled from the text addresses.
"""
import ipaddress

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '3f7161630922'
down_revision = '3d5be9b959e9'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('node', sa.Column('underlay_int', sa.BigInteger(), nullable=True))
    op.add_column('node', sa.Column('overlay_int', sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text('SELECT id, underlay_ip, overlay_ip FROM node')).fetchall()
    for node_id, underlay_ip, overlay_ip in rows:
        bind.execute(
            sa.text('UPDATE node SET underlay_int = :underlay, overlay_int = :overlay WHERE id = :id'),
            {
                'underlay': int(ipaddress.IPv4Address(underlay_ip)),
                'overlay': int(ipaddress.IPv4Address(overlay_ip)),
                'id': node_id,
            },
        )
    op.create_index(op.f('ix_node_underlay_int'), 'node', ['underlay_int'], unique=True)
    op.create_index(op.f('ix_node_overlay_int'), 'node', ['overlay_int'], unique=True)


def downgrade():
    op.drop_index(op.f('ix_node_overlay_int'), table_name='node')
    op.drop_index(op.f('ix_node_underlay_int'), table_name='node')
    # Plain DROP COLUMN (SQLite >= 3.35 does it in place): batch mode would copy the node table,
    # and dropping the old copy with foreign keys on would cascade-delete links and tokens.
    op.drop_column('node', 'overlay_int')
    op.drop_column('node', 'underlay_int')
