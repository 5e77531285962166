"""boot volumes record where they are served while attached

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("boot_volumes") as batch_op:
        batch_op.add_column(sa.Column("attachment_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("time_attached", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("boot_volumes") as batch_op:
        batch_op.drop_column("time_attached")
        batch_op.drop_column("attachment_uri")
