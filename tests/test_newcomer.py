"""What a new user meets first, run as they would run it: a real ``k2-migrate`` process each time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import k2_migrations
from k2_migrations.sqltext import split_statements
from tests.conftest import SERVER_URL
from tests.support.kill_harness import environment

pytestmark = pytest.mark.skipif(bool(SERVER_URL), reason="each case runs on an embedded engine of its own")

INI = "[alembic]\nscript_location = k2_migrations:alembic_env\nversion_locations = %(here)s/versions\n"


def k2(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2_migrations", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=environment(env),
    )


def project(root: Path) -> Path:
    (root / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text(INI)
    return root / "alembic.ini"


def test_the_embedded_default_lives_beside_the_configuration_whatever_the_directory(tmp_path: Path) -> None:
    ini = project(tmp_path / "proj")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = k2(elsewhere, "-c", str(ini), "current")
    assert done.returncode == 0, done.stderr
    assert f"chdb://{tmp_path}/proj/.k2-migrate/chdb: base" in done.stdout
    assert list(elsewhere.iterdir()) == []  # nothing created where the command was typed


def test_revisions_never_go_into_the_installed_package(tmp_path: Path) -> None:
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = k2_migrations:alembic_env\n")
    done = k2(tmp_path, "revision", "-m", "first")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "version_locations = %(here)s/versions" in lines[0]
    package = Path(k2_migrations.__file__).parent
    assert not (package / "alembic_env" / "versions").exists()


def test_new_and_merge_revisions_do_nothing_until_written(tmp_path: Path) -> None:
    project(tmp_path)
    url = f"chdb://{tmp_path / 'engine'}"
    assert k2(tmp_path, "revision", "-m", "base one", "--rev-id", "n1").returncode == 0
    for rev in ("n2", "n3"):  # two branches off n1
        (tmp_path / "versions" / f"{rev}.py").write_text(
            f'"""{rev}"""\nrevision = {rev!r}\ndown_revision = "n1"\nbranch_labels = None\ndepends_on = None\n\n\n'
            "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
        )
    merged = k2(tmp_path, "merge", "-m", "join")
    assert merged.returncode == 0, merged.stderr
    merge_file = next(p for p in (tmp_path / "versions").glob("*join.py"))
    body = merge_file.read_text()
    assert "op.take_guards" not in body and "my_table" not in body
    up = k2(tmp_path, "upgrade", "head", K2_MIGRATE_URL=url)
    assert up.returncode == 0, up.stderr
    current = json.loads(k2(tmp_path, "current", "--json", K2_MIGRATE_URL=url).stdout)
    assert current["up_to_date"] is True and current["in_progress"] is None


def test_the_offline_script_runs_on_an_empty_engine(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "versions" / "s1.py").write_text(
        '"""s1"""\nfrom alembic import op\n\nrevision = "s1"\ndown_revision = None\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade() -> None:\n    op.create_database('shop')\n"
        "    op.create_object('shop', 'orders', 'CREATE TABLE shop.orders (id UInt64) ENGINE = MergeTree ORDER BY id')"
        "\n\n\ndef downgrade() -> None:\n    op.drop_database('shop')\n"
    )
    (tmp_path / "versions" / "s2.py").write_text(
        '"""s2"""\nfrom alembic import op\n\nrevision = "s2"\ndown_revision = "s1"\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade() -> None:\n    op.add_column_if_missing('shop', 'orders', 'note', 'String')"
        "\n\n\ndef downgrade() -> None:\n    op.drop_column_if_exists('shop', 'orders', 'note')\n"
    )
    script = k2(tmp_path, "upgrade", "head", "--sql")
    assert script.returncode == 0, script.stderr
    statements = split_statements(script.stdout)
    # Run it, statement by statement, on an engine that has never seen k2-migrate.
    runner = (
        "import json, sys, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(dsn=sys.argv[1])\n"
        "for s in json.load(sys.stdin): c.command(s)\n"
    )
    url = f"chdb://{tmp_path / 'fresh'}"
    ran = subprocess.run(
        [sys.executable, "-c", runner, url],
        input=json.dumps(statements),
        capture_output=True,
        text=True,
        check=False,
        env=environment({}),
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    current = json.loads(k2(tmp_path, "current", "--json", K2_MIGRATE_URL=url).stdout)
    assert current["current"] == ["s2"] and current["up_to_date"] is True
    again = k2(tmp_path, "upgrade", "head", K2_MIGRATE_URL=url)
    assert again.returncode == 0 and "Nothing to do" in again.stdout


def test_current_with_two_unmerged_heads_lists_both(tmp_path: Path) -> None:
    project(tmp_path)
    url = f"chdb://{tmp_path / 'engine'}"
    for rev, down in (("h1", None), ("h2", "h1"), ("h3", "h1")):
        (tmp_path / "versions" / f"{rev}.py").write_text(
            f'"""{rev}"""\nrevision = {rev!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n'
            "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
        )
    assert k2(tmp_path, "upgrade", "heads", K2_MIGRATE_URL=url).returncode == 0
    text = k2(tmp_path, "current", K2_MIGRATE_URL=url)
    assert text.returncode == 0, text.stderr
    assert "h2 (head)" in text.stdout and "h3 (head)" in text.stdout
    document = json.loads(k2(tmp_path, "current", "--json", K2_MIGRATE_URL=url).stdout)
    assert document["current"] == ["h2", "h3"] and document["heads"] == ["h2", "h3"]
    assert document["head"] is None and document["up_to_date"] is True


def test_alembics_own_command_line_says_to_use_k2_migrate(tmp_path: Path) -> None:
    project(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(tmp_path / "alembic.ini"), "current"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=environment({}),
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "use k2-migrate" in lines[0], done.stderr
    assert not (tmp_path / ".k2-migrate").exists()
