"""The ``k2-migrate`` command line: click options, one-line errors and output; thin over commands/.

The group and its global options live in :mod:`~k2_migrations.cli.app`; the commands, by family, in
:mod:`~k2_migrations.cli.migrate`, :mod:`~k2_migrations.cli.scripts` and :mod:`~k2_migrations.cli.tools`,
and are attached to the group here, in one place. Only click is imported at module level.
"""

from k2_migrations.cli import migrate, project_init, scripts, tools
from k2_migrations.cli.app import main

for _command in (
    project_init.init,
    migrate.upgrade,
    migrate.downgrade,
    migrate.plan,
    migrate.stamp,
    migrate.accept,
    migrate.current,
    migrate.check_drift,
    scripts.history,
    scripts.heads,
    scripts.branches,
    scripts.show,
    scripts.edit,
    scripts.revision,
    scripts.merge,
    tools.log,
    tools.show_lock,
    tools.unlock,
    tools.lint,
    tools.test_revisions,
):
    main.add_command(_command)

__all__ = ["main"]
