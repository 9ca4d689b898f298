"""A revision that holds its run — and so the migration lock — until the test opens a gate file."""

#: Holds its run (and so the lock) from its first step until the test creates the gate file, so
#: that what the test does meanwhile never races the run, however loaded the machine is.
GATED_REVISION = '''"""a revision that keeps its run going until the test lets it finish"""

import time
from pathlib import Path

from alembic import op

revision = "k1"
down_revision = None
branch_labels = None
depends_on = None

GATE = Path({gate!r})


def upgrade() -> None:
    op.execute_sql("SELECT 1")
    deadline = time.monotonic() + 60  # a test that died never opens it
    while not GATE.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    op.execute_sql("SELECT 2")


def downgrade() -> None:
    """Nothing to undo: the upgrade only runs SELECTs."""
'''
