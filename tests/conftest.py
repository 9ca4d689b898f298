"""Shared fixtures: a real ClickHouse engine and throwaway k2-migrate projects on it.

The engine is chDB in a session-wide scratch directory (chDB allows one data path per process), or
the server named by ``K2_TEST_CLICKHOUSE_URL`` when it is set. Tests isolate themselves by database
name, not by engine: every project gets its own migrations database and its own application
databases.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from hypothesis import Phase, settings

from k2_migrations.cli import main
from k2_migrations.config import parse_url
from tests.support.kill_harness import Forker
from tests.support.zookeeper import ZooKeeper, unavailable_reason

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

ROOT = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get("K2_TEST_CLICKHOUSE_URL")

pytest_plugins = ["tests.support.kafka_fixtures"]

#: `make mutants` runs the property tests once per mutant: a fixed, smaller set of examples each
#: time (the same mutant is killed or not on every run), no deadline in its forked workers, and no
#: shrinking (a mutant is killed by its first failing example; the smallest one tells nothing more).
settings.register_profile(
    "mutants",
    max_examples=40,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


@pytest.fixture(scope="session")
def target_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if SERVER_URL:
        return SERVER_URL
    return f"chdb://{tmp_path_factory.mktemp('engine') / 'chdb'}"


@pytest.fixture(scope="session")
def ch(target_url: str) -> Iterator[Client]:
    """A client on the test engine, for arranging data and reading back the schema."""
    from k2_migrations.backends import open_backend

    backend = open_backend(parse_url(target_url))
    yield backend.client
    backend.close()


@pytest.fixture(scope="session")
def forker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forker]:
    """Real ``k2-migrate`` processes, each forked from one server that paid the imports once."""
    with Forker(tmp_path_factory.mktemp("forks")) as started:
        yield started


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Project:
    """A k2-migrate project in a temporary directory, pointed at the test engine."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def versions(self) -> Path:
        return self.root / "versions"

    @property
    def migrations_database(self) -> str:
        return self.env["K2_MIGRATE_DATABASE"]

    def write_revision(self, revision: str, down_revision: str | None, upgrade: str, downgrade: str) -> Path:
        def body(code: str) -> str:
            return textwrap.indent(textwrap.dedent(code).strip() or "pass", "    ")

        text = "\n".join(
            [
                f'"""revision {revision}"""',
                "",
                "from alembic import op",
                "",
                f"revision = {revision!r}",
                f"down_revision = {down_revision!r}",
                "branch_labels = None",
                "depends_on = None",
                "",
                "",
                "def upgrade() -> None:",
                body(upgrade),
                "",
                "",
                "def downgrade() -> None:",
                body(downgrade),
                "",
            ]
        )
        path = self.versions / f"r{revision}.py"
        path.write_text(text)
        return path

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        cwd = Path.cwd()
        os.chdir(self.root)
        try:
            result = runner.invoke(main, list(args), env={**self.env, **(env or {})}, catch_exceptions=False)
        finally:
            os.chdir(cwd)
        return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def project(tmp_path: Path, target_url: str) -> Project:
    (tmp_path / "versions").mkdir()
    (tmp_path / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    return Project(
        tmp_path,
        {
            "K2_MIGRATE_URL": target_url,
            "K2_MIGRATE_DATABASE": unique("k2m"),
            "K2_MIGRATE_PASSWORD": "",
            "K2_MIGRATE_PASSWORD_FILE": "",
        },
    )


def scalar(client: Client, sql: str) -> object:
    return client.query(sql).result_rows[0][0]


def table_names(client: Client, database: str) -> set[str]:
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = {d:String}", parameters={"d": database}
    ).result_rows
    return {str(r[0]) for r in rows}


def engines_in(client: Client, database: str) -> dict[str, str]:
    rows = client.query(
        "SELECT name, engine FROM system.tables WHERE database = {d:String}", parameters={"d": database}
    ).result_rows
    return {str(name): str(engine) for name, engine in rows}


@pytest.fixture(scope="module")
def zookeeper() -> Iterator[ZooKeeper]:
    """A ZooKeeper of the module's own (Debian's, started and stopped by pid), or a skip saying why."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with ZooKeeper() as server:
        yield server
