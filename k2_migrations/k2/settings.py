"""The K2 revisions' settings: source and target databases, and the Kafka broker list.

Read from the environment (``K2_SOURCE_DATABASE``, ``K2_TARGET_DATABASE``, ``K2_KAFKA_BROKERS``),
then from the ``[k2]`` section of alembic.ini, then the production defaults — so one set of
revisions serves production, staging and the test suite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from k2_migrations.config import check_identifier
from k2_migrations.k2.baseline_schema import PRODUCTION_BROKERS, PRODUCTION_DATABASE, TARGET_DATABASE


@dataclass(frozen=True)
class K2Settings:
    source: str
    target: str
    brokers: str


def k2_settings() -> K2Settings:
    """The settings of the running migration (call from inside a revision's upgrade/downgrade)."""
    from alembic import op

    config = op.get_context().config
    section = (config.get_section("k2", {}) if config is not None else {}) or {}

    def value(env: str, key: str, default: str) -> str:
        return os.environ.get(env) or section.get(key) or default

    settings = K2Settings(
        source=value("K2_SOURCE_DATABASE", "source_database", PRODUCTION_DATABASE),
        target=value("K2_TARGET_DATABASE", "target_database", TARGET_DATABASE),
        brokers=value("K2_KAFKA_BROKERS", "kafka_brokers", PRODUCTION_BROKERS),
    )
    check_identifier(settings.source, "source database")
    check_identifier(settings.target, "target database")
    return settings
