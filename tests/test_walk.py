"""The walk: random upgrades and downgrades of a user's own project, each a ``k2-migrate`` process.

A seeded random sequence of ``upgrade head``, ``downgrade base``, ``upgrade +1``, ``downgrade -1``,
``upgrade REV`` and ``downgrade REV`` runs on one embedded database; after every command
``k2-migrate current --json`` must name the revision a model of the walk says it is at, and the live
schema, read from system tables, must be the one written down by hand below for that revision. The
seed is random unless ``K2_TEST_WALK_SEED`` gives one, and every failure names it, so any failing walk
can be replayed.

Then kills at the version change: a failpoint (``K2_MIGRATE_FAILPOINT``) kills ``upgrade head`` and
``downgrade base`` just before or just after the version change of their 1st, 2nd or 3rd revision
step; the same command run again must converge, and no version change may ever have been a mutation.
"""

from __future__ import annotations

import json
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SERVER_URL, Project
from tests.support.walk_server import Run, WalkServer

pytestmark = pytest.mark.skipif(bool(SERVER_URL), reason="each walk runs on an embedded engine of its own")

MIGRATIONS = "walk_migrations"
REVISIONS = ("shop1", "shop2", "shop3")
#: README's exit code table: 2 is a usage error (bad arguments or revision).
USAGE = 2
KILLED = -signal.SIGKILL

# -- the user's project: three revisions, none of them K2's ------------------------------------------

ORDERS = (
    "CREATE TABLE shop.orders (id UInt64, amount Decimal(18, 2), created DateTime)"
    " ENGINE = MergeTree ORDER BY id"
)
TOTALS = (
    "CREATE TABLE shop.order_totals (status LowCardinality(String), total Decimal(38, 2))"
    " ENGINE = SummingMergeTree ORDER BY status"
)
TOTALS_MV = (
    "CREATE MATERIALIZED VIEW shop.order_totals_mv TO shop.order_totals"
    " AS SELECT status, sum(amount) AS total FROM shop.orders GROUP BY status"
)
BODIES = (
    (
        f'op.create_database("shop")\nop.create_object("shop", "orders", "{ORDERS}")',
        'op.drop_object("shop", "orders")\nop.drop_database("shop")',
    ),
    (
        'op.add_column_if_missing("shop", "orders", "status", "LowCardinality(String)", default="\'new\'")',
        'op.drop_column_if_exists("shop", "orders", "status")',
    ),
    (
        f'op.create_object("shop", "order_totals", "{TOTALS}")\n'
        f'op.create_object("shop", "order_totals_mv", "{TOTALS_MV}")',
        'op.drop_object("shop", "order_totals_mv")\nop.drop_object("shop", "order_totals")',
    ),
)

# -- the schema at each point of the walk, written down by hand (index 0: base) ----------------------

ENGINE_DATABASES = ["INFORMATION_SCHEMA", "default", "information_schema", "system"]
ORDERS_COLUMNS = [["id", "UInt64"], ["amount", "Decimal(18, 2)"], ["created", "DateTime"]]
TOTALS_COLUMNS = [["status", "LowCardinality(String)"], ["total", "Decimal(38, 2)"]]
SCHEMAS: tuple[dict[str, Any], ...] = (
    {
        "databases": sorted([*ENGINE_DATABASES, MIGRATIONS]),
        "tables": {},
        "columns": {},
    },
    {
        "databases": sorted([*ENGINE_DATABASES, MIGRATIONS, "shop"]),
        "tables": {"shop": {"orders": "MergeTree"}},
        "columns": {"shop.orders": ORDERS_COLUMNS},
    },
    {
        "databases": sorted([*ENGINE_DATABASES, MIGRATIONS, "shop"]),
        "tables": {"shop": {"orders": "MergeTree"}},
        "columns": {"shop.orders": [*ORDERS_COLUMNS, ["status", "LowCardinality(String)"]]},
    },
    {
        "databases": sorted([*ENGINE_DATABASES, MIGRATIONS, "shop"]),
        "tables": {
            "shop": {
                "orders": "MergeTree",
                "order_totals": "SummingMergeTree",
                "order_totals_mv": "MaterializedView",
            }
        },
        "columns": {
            "shop.orders": [*ORDERS_COLUMNS, ["status", "LowCardinality(String)"]],
            "shop.order_totals": TOTALS_COLUMNS,
            "shop.order_totals_mv": TOTALS_COLUMNS,
        },
    },
)


# -- the model: where a command takes the walk, and with which exit code ----------------------------


def expected(verb: str, target: str, level: int) -> tuple[int, int]:
    """(exit code, level after) of ``k2-migrate VERB TARGET`` at ``level`` (0 base, 1..3 a revision).

    As Alembic behaves: an upgrade to a revision already applied does nothing; a relative step that
    cannot be taken (``+1`` at head, ``-1`` at base) and a downgrade "to" a revision not yet applied
    are errors in the revision named, and an error changes nothing.
    """
    top = len(REVISIONS)
    if target == "head":
        return 0, top
    if target == "base":
        return 0, 0
    if target == "+1":
        return (0, level + 1) if level < top else (USAGE, level)
    if target == "-1":
        return (0, level - 1) if level > 0 else (USAGE, level)
    wanted = REVISIONS.index(target) + 1
    if verb == "upgrade":
        return 0, max(level, wanted)
    return (0, wanted) if wanted <= level else (USAGE, level)


def choose(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["head", "base", "+1", "-1", "upgrade REV", "downgrade REV"])
    if kind.endswith("REV"):
        return kind.split()[0], rng.choice(REVISIONS)
    return ("upgrade" if kind in {"head", "+1"} else "downgrade"), kind


def named(level: int) -> str:
    return REVISIONS[level - 1] if level else "base"


# -- running it -------------------------------------------------------------------------------------


class Walk:
    """The project, its embedded database, and the commands run on it through the walk server."""

    def __init__(self, server: WalkServer, root: Path) -> None:
        self.server = server
        self.root = root
        self.path = root / "engine"
        (root / "versions").mkdir()
        (root / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
        project = Project(root)
        for index, (upgrade, downgrade) in enumerate(BODIES):
            project.write_revision(
                REVISIONS[index], REVISIONS[index - 1] if index else None, upgrade, downgrade
            )

    def k2_migrate(self, *args: str, env: dict[str, str] | None = None, schema: bool = False) -> Run:
        arguments = ["--url", f"chdb://{self.path}", "--migrations-database", MIGRATIONS, *args]
        return self.server.run(self.root, arguments, env or {}, (self.path, MIGRATIONS) if schema else None)

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``current --json`` (the real command) and the live schema, read in the same process."""
        probe = self.k2_migrate("current", "--json", schema=True)
        assert probe.returncode == 0, probe.stderr[-2000:]
        assert probe.schema is not None
        return json.loads(probe.stdout), probe.schema

    def assert_at(self, level: int, where: str) -> dict[str, Any]:
        """Current is exactly ``level`` with nothing in progress, and the schema is the hand-written one;
        returns the live schema."""
        current, schema = self.state()
        heads = [REVISIONS[level - 1]] if level else []
        assert (current["current"], current["in_progress"]) == (heads, None), f"{where}: current is {current}"
        live = {k: v for k, v in schema.items() if k != "migration_mutations"}
        assert live == SCHEMAS[level], f"{where}: the schema is not {named(level)}'s"
        return schema


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WalkServer]:
    with WalkServer(tmp_path_factory.mktemp("walk_server")) as started:
        yield started


def walk(server: WalkServer, root: Path, steps: int) -> None:
    seed = int(os.environ.get("K2_TEST_WALK_SEED") or random.SystemRandom().randrange(2**32))
    print(f"walk seed {seed} (replay with K2_TEST_WALK_SEED={seed})")
    rng = random.Random(seed)
    on = Walk(server, root)
    level = 0
    history: list[str] = []
    for step in range(1, steps + 1):
        verb, target = choose(rng)
        code, after = expected(verb, target, level)
        history.append(f"{verb} {target}")
        where = (
            f"seed {seed} (K2_TEST_WALK_SEED={seed}), step {step}: `k2-migrate {verb} {target}` at"
            f" {named(level)}, expected exit {code} at {named(after)}; the walk: {', '.join(history)}"
        )
        run = on.k2_migrate(verb, target)
        assert run.returncode == code, f"{where}: exit {run.returncode}\n{run.stderr[-2000:]}"
        if code:
            errors = [line for line in run.stderr.splitlines() if line.startswith("k2-migrate: error: ")]
            assert len(errors) == 1 and "Traceback" not in run.stderr, f"{where}: {run.stderr[-2000:]}"
        schema = on.assert_at(after, where)
        level = after
    assert schema["migration_mutations"] == 0, f"seed {seed}: a version change was a mutation"


def test_a_random_walk_of_upgrades_and_downgrades(server: WalkServer, tmp_path: Path) -> None:
    walk(server, tmp_path, 25)


@pytest.mark.slow
def test_a_long_random_walk_of_upgrades_and_downgrades(server: WalkServer, tmp_path: Path) -> None:
    walk(server, tmp_path, 200)


# -- kills at the version change ---------------------------------------------------------------------


@pytest.mark.parametrize("nth", [1, 2, 3])
@pytest.mark.parametrize("failpoint", ["version-before", "version-written"])
@pytest.mark.parametrize("command", ["upgrade head", "downgrade base"])
def test_a_kill_at_the_version_change_converges(
    server: WalkServer, tmp_path: Path, command: str, failpoint: str, nth: int
) -> None:
    """Killed at the nth version change (one per revision step), the run left the heads the old or the
    new ones and the revision's schema done; the same command again ends at the target."""
    on = Walk(server, tmp_path)
    verb, target = command.split()
    start, end = (0, 3) if verb == "upgrade" else (3, 0)
    if start:
        assert on.k2_migrate("upgrade", "head").returncode == 0
    killed = on.k2_migrate(verb, target, env={"K2_MIGRATE_FAILPOINT": f"{failpoint}:{nth}"})
    assert killed.returncode == KILLED, f"not killed at {failpoint}:{nth}: exit {killed.returncode}"
    step, direction = (1, "up") if verb == "upgrade" else (-1, "down")
    done = start + nth * step  # the nth revision step's operations all ran
    current, schema = on.state()
    heads_at = done if failpoint == "version-written" else done - step
    assert current["current"] == ([REVISIONS[heads_at - 1]] if heads_at else []), current
    if failpoint == "version-before":  # docs/safety.md: "a crash before it leaves the attempt in progress"
        moving = REVISIONS[done - 1] if verb == "upgrade" else REVISIONS[done]
        interrupted = current["in_progress"] or {}
        assert (interrupted.get("revision"), interrupted.get("direction")) == (moving, direction), current
    assert {k: v for k, v in schema.items() if k != "migration_mutations"} == SCHEMAS[done]

    again = on.k2_migrate(verb, target)
    assert again.returncode == 0, again.stderr[-2000:]
    schema = on.assert_at(end, f"{command} after a kill at {failpoint}:{nth}")
    log = on.k2_migrate("log", "--json", "-n", "10000")
    assert log.returncode == 0, log.stderr[-2000:]
    newest: dict[str, str] = {}
    for entry in json.loads(log.stdout)["entries"]:  # newest first
        if entry["kind"] == "revision":
            newest.setdefault(entry["revision"], entry["status"])
    assert newest == dict.fromkeys(REVISIONS, "done"), newest
    assert schema["migration_mutations"] == 0
