"""garbage collection: condemned packs and job start times

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("time_started", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("result", sa.Text(), nullable=True))
    op.create_table(
        "gc_condemned",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("pack_id", sa.String(length=64), nullable=False),
        sa.Column("time_condemned", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "pack_id"),
    )


def downgrade() -> None:
    op.drop_table("gc_condemned")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("result")
        batch_op.drop_column("time_started")
