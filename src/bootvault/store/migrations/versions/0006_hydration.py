"""volumes restored instantly show how much of their data is in place

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("boot_volumes") as batch_op:
        batch_op.add_column(sa.Column("hydration_percent", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("boot_volumes") as batch_op:
        batch_op.drop_column("hydration_percent")
