"""The child processes of ``revision --autogenerate``: k2-migrate run on a scratch embedded engine.

``python -m k2_migrations.cli.scratch_runs proof`` proves a generated revision
(:mod:`k2_migrations.declared.proof`); ``... replay`` replays the project's revisions for
``--from-revisions`` (:mod:`k2_migrations.declared.replay`). Each reads its request as JSON on stdin,
works in a temporary directory of its own (chDB holds one data path per process) and prints its
JSON document. They live at the command line's layer because they run the ``k2-migrate`` command
itself, in this process, against the engine the process holds: the user's own path, end to end.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def _k2_migrate(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    from click.testing import CliRunner

    from k2_migrations.cli import main

    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    request = json.load(sys.stdin)
    with tempfile.TemporaryDirectory(prefix=f"k2-migrate-{kind}-") as path:
        if kind == "proof":
            from k2_migrations.declared.proof import run as prove

            document: dict[str, object] = {"differences": prove(request, Path(path), _k2_migrate)}
        elif kind == "replay":
            from k2_migrations.declared.replay import run as replay

            document = replay(request, Path(path) / "engine", _k2_migrate)
        else:
            sys.exit(f"usage: python -m k2_migrations.cli.scratch_runs proof|replay (not {kind!r})")
    json.dump(document, sys.stdout)


if __name__ == "__main__":
    main()
