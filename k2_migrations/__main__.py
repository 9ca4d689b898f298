"""``python -m k2_migrations`` is ``k2-migrate``."""

from k2_migrations.cli import main

main()
