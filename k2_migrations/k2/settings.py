"""The K2 revisions' settings: source and target databases, and the Kafka broker list.

Read from the environment (``K2_SOURCE_DATABASE``, ``K2_TARGET_DATABASE``, ``K2_KAFKA_BROKERS``),
then from the ``[k2]`` section of alembic.ini, then the production defaults — so one set of
revisions serves production, staging and the test suite.

Resolved the way ``k2-migrate``'s own settings are: click options with an ``envvar`` and the
ini section as their ``default_map`` (:func:`~k2_migrations.commands.project.ini_defaults`), so
there is one precedence, click's, and not a second hand-written one. These options have no flags:
the revisions run inside ``k2-migrate``, whose command line is its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from k2_migrations.commands.project import ini_defaults
from k2_migrations.config import check_identifier
from k2_migrations.k2.baseline_schema import PRODUCTION_BROKERS, PRODUCTION_DATABASE, TARGET_DATABASE


@dataclass(frozen=True)
class K2Settings:
    source: str
    target: str
    brokers: str


@click.command()
@click.option("--source-database", envvar="K2_SOURCE_DATABASE", default=PRODUCTION_DATABASE)
@click.option("--target-database", envvar="K2_TARGET_DATABASE", default=TARGET_DATABASE)
@click.option("--kafka-brokers", envvar="K2_KAFKA_BROKERS", default=PRODUCTION_BROKERS)
def _k2_options(source_database: str, target_database: str, kafka_brokers: str) -> None:
    """The [k2] settings as click options: never invoked, only resolved (see k2_settings)."""


def k2_settings() -> K2Settings:
    """The settings of the running migration (call from inside a revision's upgrade/downgrade)."""
    from alembic import op

    config = op.get_context().config
    path = config.config_file_name if config is not None else None
    known = [param.name for param in _k2_options.params if param.name]
    section = ini_defaults(Path(path), "k2", known) if path else {}
    values = _k2_options.make_context("k2", [], default_map=section).params
    settings = K2Settings(
        source=values["source_database"], target=values["target_database"], brokers=values["kafka_brokers"]
    )
    check_identifier(settings.source, "source database")
    check_identifier(settings.target, "target database")
    return settings
