"""A newcomer's first minutes, as real ``k2-migrate`` processes: ``init``, a first revision, ``-v``,
and logging configured from alembic.ini."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SERVER_URL
from tests.support.kill_harness import environment

pytestmark = pytest.mark.skipif(bool(SERVER_URL), reason="each case runs on an embedded engine of its own")

#: The console script pip installs, as the README's commands call it.
K2_MIGRATE = str(Path(sys.executable).parent / "k2-migrate")

#: One line of ``-v``: the statement, then how long it took.
STATEMENT = re.compile(r"^INFO k2_migrations\.sql: (?P<sql>.+)  -- (?P<seconds>\d+\.\d{3}) s$")

URL_SECRET = "Url-S3cret-9"
#: A revision whose statements hold a password in a URL (a URL table's source).
UPGRADE = (
    "op.create_database('shop')\n"
    "op.execute_sql('CREATE TABLE IF NOT EXISTS shop.orders (id UInt64) ENGINE = MergeTree ORDER BY id')\n"
    'op.execute_sql("CREATE TABLE IF NOT EXISTS shop.remote (id UInt64) '
    f"ENGINE = URL('http://reader:{URL_SECRET}@127.0.0.1:1/orders.csv', CSV)\")\n"
)
EXPECTED = [
    "CREATE DATABASE IF NOT EXISTS shop",
    "CREATE TABLE IF NOT EXISTS shop.orders (id UInt64) ENGINE = MergeTree ORDER BY id",
    "CREATE TABLE IF NOT EXISTS shop.remote (id UInt64) ENGINE = URL('http://reader:***@127.0.0.1:1/orders.csv', CSV)",
]


def k2(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [K2_MIGRATE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env=environment(env),
    )


def first_revision(root: Path) -> Path:
    """``k2-migrate revision`` in ``root``, its upgrade() filled in with UPGRADE."""
    done = k2(root, "revision", "-m", "create shop", "--rev-id", "a1")
    assert done.returncode == 0, done.stderr
    [path] = (root / "versions").glob("*.py")
    body = "\n".join("    " + line for line in UPGRADE.splitlines())
    path.write_text(path.read_text().replace("    pass\n", body + "\n", 1))
    return path


def statements(stderr: str) -> list[tuple[str, float]]:
    return [(m["sql"], float(m["seconds"])) for line in stderr.splitlines() if (m := STATEMENT.match(line))]


# -- init ---------------------------------------------------------------------------------------


def test_the_readme_commands_start_a_project_from_nothing(tmp_path: Path) -> None:
    done = k2(tmp_path, "init", "myproject")
    assert done.returncode == 0, done.stderr
    project = tmp_path / "myproject"
    assert sorted(p.name for p in project.iterdir()) == ["alembic.ini", "versions"]
    assert list((project / "versions").iterdir()) == []
    assert "[k2]" not in (project / "alembic.ini").read_text()
    revision = k2(project, "revision", "-m", "create shop")
    assert revision.returncode == 0, revision.stderr
    [written] = (project / "versions").glob("*_create_shop.py")
    upgrade = k2(project, "upgrade", "head")
    assert upgrade.returncode == 0, upgrade.stderr
    current = k2(project, "current")
    assert current.returncode == 0, current.stderr
    engine = project / ".k2-migrate" / "chdb"
    rev = written.read_text().split("revision: str = ", 1)[1].split("\n", 1)[0].strip("'\"")
    assert current.stdout.startswith(f"chdb://{engine}: {rev} (head)"), current.stdout
    assert sorted(p.name for p in project.iterdir()) == [".k2-migrate", "alembic.ini", "versions"]


def test_init_in_the_current_directory(tmp_path: Path) -> None:
    done = k2(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alembic.ini", "versions"]


@pytest.mark.parametrize("existing", ["alembic.ini", "versions/r1_first.py"])
def test_init_never_overwrites_a_project(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / existing).write_text("mine\n")
    done = k2(tmp_path, "init")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("k2-migrate: error: ") and existing.partition("/")[0] in line
    assert (tmp_path / existing).read_text() == "mine\n"
    if existing != "alembic.ini":
        assert not (tmp_path / "alembic.ini").exists()


def test_init_leaves_an_empty_versions_directory_alone_and_uses_it(tmp_path: Path) -> None:
    (tmp_path / "versions").mkdir()
    done = k2(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "alembic.ini").is_file()


# -- -v and logging -----------------------------------------------------------------------------


def test_verbose_logs_each_statement_with_its_duration_and_no_password(tmp_path: Path) -> None:
    assert k2(tmp_path, "init").returncode == 0
    first_revision(tmp_path)
    engine = f"chdb://{tmp_path / 'engine'}"
    # The command line holds a server URL with its password (the later --url, the engine, wins).
    server = f"clickhouse://migrator:{URL_SECRET}@127.0.0.1:1/db"
    done = k2(tmp_path, "-v", "--url", server, "--url", engine, "upgrade", "head")
    assert done.returncode == 0, done.stderr
    logged = statements(done.stderr)
    assert [sql for sql, _ in logged] == EXPECTED, done.stderr
    assert all(0 <= seconds < 60 for _, seconds in logged)
    assert URL_SECRET not in done.stdout + done.stderr
    # Without -v, the shipped configuration (WARNING) logs no statement.
    quiet = k2(tmp_path, "--url", engine, "downgrade", "base")
    assert quiet.returncode == 0, quiet.stderr
    assert "k2_migrations.sql" not in quiet.stderr and "DROP DATABASE" not in quiet.stderr


def test_the_ini_logging_level_decides_what_is_logged(tmp_path: Path) -> None:
    assert k2(tmp_path, "init").returncode == 0
    first_revision(tmp_path)
    ini = tmp_path / "alembic.ini"
    ini.write_text(ini.read_text().replace("[logger_root]\nlevel = WARNING", "[logger_root]\nlevel = DEBUG"))
    done = k2(tmp_path, "--url", f"chdb://{tmp_path / 'engine'}", "upgrade", "head")  # no -v
    assert done.returncode == 0, done.stderr
    assert [sql for sql, _ in statements(done.stderr)] == EXPECTED
    # DEBUG adds each statement in full before it is sent, and what Alembic logs.
    assert "DEBUG k2_migrations.sql: sending: CREATE DATABASE IF NOT EXISTS shop" in done.stderr
    assert re.search(r"^(DEBUG|INFO) alembic\.", done.stderr, re.MULTILINE), done.stderr
    assert URL_SECRET not in done.stderr


def test_verbose_without_logging_sections_in_the_ini(tmp_path: Path) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "alembic.ini").write_text(
        "[alembic]\nscript_location = k2_migrations:alembic_env\nversion_locations = %(here)s/versions\n"
    )
    first_revision(tmp_path)
    done = k2(tmp_path, "-v", "--url", f"chdb://{tmp_path / 'engine'}", "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert [sql for sql, _ in statements(done.stderr)] == EXPECTED


def test_the_drivers_account_of_a_failure_stays_out_unless_the_ini_asks_for_it(tmp_path: Path) -> None:
    """The driver (and urllib3 under it) log their own warnings for a server they cannot reach;
    the user gets k2-migrate's one line. Its logger is not silenced: a handler of its own gets it."""
    assert k2(tmp_path, "init").returncode == 0
    url = f"clickhouse://u:{URL_SECRET}@127.0.0.1:1/db"
    done = k2(tmp_path, "--url", url, "current")
    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert line.startswith("k2-migrate: error: cannot reach ClickHouse")
    ini = tmp_path / "alembic.ini"
    text = ini.read_text().replace("[loggers]\nkeys = root", "[loggers]\nkeys = root, driver")
    text = text.replace("[handlers]\nkeys = console", "[handlers]\nkeys = console, driver")
    ini.write_text(
        text
        + "\n[logger_driver]\nlevel = WARNING\nhandlers = driver\npropagate = 0\nqualname = clickhouse_connect\n"
        + "\n[handler_driver]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = generic\n"
    )
    shown = k2(tmp_path, "--url", url, "current")
    assert shown.returncode == 3
    assert "WARNING clickhouse_connect" in shown.stderr, shown.stderr
    assert shown.stderr.splitlines()[-1] == line
    assert URL_SECRET not in shown.stderr


def test_half_a_logging_configuration_is_one_line(tmp_path: Path) -> None:
    assert k2(tmp_path, "init").returncode == 0
    ini = tmp_path / "alembic.ini"
    ini.write_text(ini.read_text().replace("[formatters]\nkeys = generic\n", ""))
    done = k2(tmp_path, "current")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert (
        line
        == "k2-migrate: error: alembic.ini configures logging but has no [formatters]; add it (k2-migrate init writes all three)"
    )


def test_every_setting_the_new_ini_shows_is_one_k2_migrate_reads(tmp_path: Path) -> None:
    """Uncommented, each ``# key = value`` of [k2_migrate] in the ini ``init`` writes is a known key."""
    from k2_migrations.cli import main
    from k2_migrations.commands.project import ini_defaults

    assert k2(tmp_path, "init").returncode == 0
    ini = tmp_path / "alembic.ini"
    text = ini.read_text()
    section = text.split("[k2_migrate]", 1)[1].split("\n[", 1)[0]
    shown = re.findall(r"^# (\w+) = ", section, flags=re.M)
    assert {"url", "cluster", "ddl_timeout", "lock_expiry"} <= set(shown), shown
    ini.write_text(text.replace(section, "\n" + "\n".join(f"{key} = 1" for key in shown) + "\n"))
    known = [p.name for p in main.params if p.name and p.name != "config_file"]
    assert set(ini_defaults(ini, "k2_migrate", known)) == set(shown)
