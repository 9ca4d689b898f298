"""The schema at the heads without the target: the project's revisions replayed on a scratch engine.

Run in a child process (one data path per process in chDB, see :mod:`.scratch`), started as
``python -m k2_migrations.cli.scratch_runs replay``: the child runs
``k2-migrate --url chdb://<temporary> upgrade heads`` with the project's own configuration, so no
setting of the target is used to connect, then reads the databases asked for as
:func:`.shapes.read_databases` reads them, and each object's CREATE.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2_migrations.declared.child import run_child
from k2_migrations.errors import UsageError
from k2_migrations.introspection.shape import shape_from_json, shape_to_json

if TYPE_CHECKING:
    from k2_migrations.declared.proof import K2Migrate

TIMEOUT_S = 600.0


def replay(config_file: Path, databases: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The shapes of ``databases`` (None: absent) and each object's CREATE after replaying the revisions."""
    request = {"config": str(config_file.resolve()), "databases": databases}
    result = run_child(
        ["k2_migrations.cli.scratch_runs", "replay"],
        request,
        "replaying the revisions on a scratch engine",
        TIMEOUT_S,
        cwd=config_file.resolve().parent,
    )
    if result["error"]:
        raise UsageError(f"replaying the revisions on a scratch engine (--from-revisions): {result['error']}")
    schema = {
        db: None if shapes is None else {n: shape_from_json(s) for n, s in shapes.items()}
        for db, shapes in result["schema"].items()
    }
    return schema, dict(result["ddl"])


def run(request: dict[str, Any], path: Path, command: K2Migrate) -> dict[str, Any]:
    """Replay on an engine at ``path``; the JSON document (``error``: the run's last line, if it failed).

    ``command`` runs k2-migrate in this process (see :data:`.proof.K2Migrate`)."""
    from k2_migrations.backends import open_backend
    from k2_migrations.config import parse_url
    from k2_migrations.declared.shapes import read_databases
    from k2_migrations.introspection.catalog import Catalog

    url = f"chdb://{path}"
    env = {"K2_MIGRATE_URL": url, "K2_MIGRATE_PASSWORD": "", "K2_MIGRATE_PASSWORD_FILE": ""}
    code, output = command(["--config", request["config"], "--url", url, "upgrade", "heads"], env)
    if code:
        lines = output.strip().splitlines()
        return {"error": f"upgrade heads exited {code}: {lines[-1] if lines else ''}"}
    catalog = Catalog(open_backend(parse_url(url)).client)
    schema = read_databases(catalog, set(request["databases"]))
    ddl = {
        f"{db}.{name}": str(query)
        for db, name, query in catalog.rows(
            "SELECT database, name, create_table_query FROM system.tables"
            " WHERE database IN {d:Array(String)} AND NOT startsWith(name, '.inner')",
            {"d": request["databases"]},
        )
    }
    return {
        "error": "",
        "schema": {
            db: None if shapes is None else {n: shape_to_json(s) for n, s in shapes.items()}
            for db, shapes in schema.items()
        },
        "ddl": ddl,
    }
