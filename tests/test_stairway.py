"""The project's own revisions pass the stairway test (a separate process: it opens its own engine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SERVER_URL
from tests.support.kill_harness import environment

pytestmark = pytest.mark.skipif(bool(SERVER_URL), reason="the stairway runs on a throwaway embedded engine")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = environment({"K2_KAFKA_BROKERS": "127.0.0.1:9"})
    return subprocess.run(
        [sys.executable, "-m", "k2_migrations", "-q", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_k2_revisions_pass_the_stairway(tmp_path: Path) -> None:
    done = run(["-c", str(ROOT / "alembic.ini"), "test-revisions", "--keep", str(tmp_path / "db")], ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "k2_001: up, down, up: schema identical; down keeps the schema by design (the baseline adopts the"
        " platform's schema; it never owned it)",
        *[f"k2_00{i}: up, down, up: schema identical" for i in range(2, 5)],
    ]


def project_of(tmp_path: Path, *revisions: tuple[str, str | None, str, str]) -> Path:
    """A project directory whose revisions are (id, down_revision, upgrade body, downgrade body)."""
    (tmp_path / "versions").mkdir()
    (tmp_path / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    for revision, down, upgrade, downgrade in revisions:
        (tmp_path / "versions" / f"r{revision}.py").write_text(
            f'"""{revision}"""\nfrom alembic import op\n\nrevision = "{revision}"\ndown_revision = {down!r}\n\n\n'
            f"def upgrade() -> None:\n    {upgrade}\n\n\ndef downgrade() -> None:\n    {downgrade}\n"
        )
    return tmp_path


def test_the_first_revision_and_new_databases_are_compared_too(tmp_path: Path) -> None:
    done = run(["test-revisions"], project_of(tmp_path, ("a", None, "op.create_database('shop')", "pass")))
    assert done.returncode == 8, done.stderr[-3000:]
    assert "a: FAILED" in done.stdout
    assert "down did not restore the schema: shop database: expected absent, found present" in done.stdout


def test_a_downgrade_that_forgets_something_fails_the_stairway(tmp_path: Path) -> None:
    create = "op.create_object('shop', 'orders', 'CREATE TABLE shop.orders (id UInt64) ENGINE = MergeTree ORDER BY id')"
    project = project_of(
        tmp_path,
        ("a", None, "op.create_database('shop')", "op.drop_database('shop')"),
        ("b", "a", create, "pass"),
    )
    done = run(["test-revisions"], project)
    assert done.returncode == 8, done.stderr[-3000:]
    assert "b: FAILED" in done.stdout
    assert (
        "down did not restore the schema: shop.orders object: expected absent, found present" in done.stdout
    )
    assert "k2-migrate: error: stairway failed: b:" in done.stderr
