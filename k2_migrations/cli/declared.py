"""``k2-migrate check --schema``: the target against the declared schema, as text or JSON."""

from __future__ import annotations

import click

from k2_migrations.cli.app import project_of
from k2_migrations.cli.output import echo


def check_declared(ctx: click.Context, as_json: bool) -> None:
    """One line per difference and exit 8; each statement the declared schema cannot hold, exit 2."""
    from k2_migrations.commands.schema import check_schema
    from k2_migrations.declared.source import DeclaredSchemaError
    from k2_migrations.errors import DriftDetected, ExitCode
    from k2_migrations.output.jsondoc import dump

    try:
        result = check_schema(project_of(ctx))
    except DeclaredSchemaError as exc:
        # Every refused statement, one line each; then the error line (and exit 2) as for any error.
        if as_json:
            document = {
                "ok": False,
                "error": exc.message,
                "exit_code": int(exc.exit_code),
                "refused": exc.refusals,
            }
            echo(dump(document))
            ctx.exit(int(exc.exit_code))
        for line in exc.refusals:
            echo(f"refused: {line}", err=True)
        raise
    differences = [d.describe() for d in result.differences]
    if as_json:
        document = {
            "ok": not differences,
            "schema": result.sources,
            "databases": result.databases,
            "differences": differences,
        }
        echo(dump(document))
        ctx.exit(int(ExitCode.DRIFT) if differences else 0)
    where = ", ".join(result.sources)
    if not differences:
        echo(f"no difference: {', '.join(result.databases)} as declared in {where}")
        return
    for line in differences:
        echo(f"difference: {line}")
    raise DriftDetected(f"{len(differences)} difference(s) from the declared schema in {where}")
