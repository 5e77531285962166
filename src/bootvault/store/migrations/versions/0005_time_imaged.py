"""backups keep their creation time (the sort key) apart from the instant of their image

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("boot_volume_backups") as batch_op:
        batch_op.add_column(sa.Column("time_imaged", sa.DateTime(), nullable=True))
    # Until now time_created held the image's instant once a backup had one.
    op.execute(
        "UPDATE boot_volume_backups SET time_imaged = time_created "
        "WHERE lifecycle_state NOT IN ('REQUEST_RECEIVED', 'CREATING')"
    )


def downgrade() -> None:
    with op.batch_alter_table("boot_volume_backups") as batch_op:
        batch_op.drop_column("time_imaged")
