"""No password ever leaves k2-migrate: not in output, errors, ``--json``, logs, the journal or the
snapshots table.

Two kinds of proof. A property test throws passwords of every kind of character, in URLs broken in
every way people break them, at the command line, and greps every output for the password. A
cross-process test puts passwords in each place a password can come from (a server URL, the
environment, a password file, a revision's SQL), runs real ``k2-migrate`` processes on an embedded
engine of its own, and then reads the migrations database back from another process.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2_migrations import config
from tests.conftest import SERVER_URL, Project
from tests.support.kill_harness import ROOT, environment, k2_migrate

#: What a password may hold: printable ASCII with every URL delimiter, and some non-ASCII.
PASSWORDS = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"))
    | st.sampled_from("@/:%#?[]"),
    min_size=1,
    max_size=16,
)
#: The ways a URL gets broken: each takes the URL and returns it broken.
MUTATIONS = {
    "drop a slash": lambda url: url.replace("://", ":/", 1),
    "add a slash": lambda url: url.replace("://", ":///", 1),
    "port not a number": lambda url: url.replace("127.0.0.1:1/", "127.0.0.1:x1/"),
    "port too big": lambda url: url.replace("127.0.0.1:1/", "127.0.0.1:99999/"),
    "no port after ':'": lambda url: url.replace("127.0.0.1:1/", "127.0.0.1:/"),
    "unclosed '['": lambda url: url.replace("127.0.0.1:1/", "[::1:1/"),
    "stray ']'": lambda url: url.replace("127.0.0.1:1/", "::1]:1/"),
    "IPv6 in brackets": lambda url: url.replace("127.0.0.1:1/", "[::1]:1/"),
    "bad scheme": lambda url: "clickhuse" + url.partition(":")[1] + url.partition(":")[2],
    "upper-case scheme": lambda url: url.replace("clickhouse", "CLICKHOUSE", 1),
    "chdb scheme": lambda url: url.replace("clickhouse", "chdb", 1),
    "no scheme": lambda url: url.partition("://")[2] or url,
    "unknown option": lambda url: url + "?colour=red",
    "fragment": lambda url: url + "#top",
    "bad database": lambda url: url.replace("/db", "/d-b"),
    "no host": lambda url: url.replace("127.0.0.1", ""),
}


def password_is_checkable(password: str, written: str, url: str, framing: str) -> bool:
    """Whether finding ``password`` in the output proves a leak: long enough to be masked in free
    text, and spelled neither by the rest of the URL (a host ``127.0.0.1`` holds ``0.0.``) nor by
    the words every such output is made of (``false``, ``k2-migrate: error``, the driver's logs)."""
    rest = url.replace(written, "", 1)
    return (
        len(password) >= config.MIN_SECRET_LENGTH
        and password not in rest
        and written not in rest
        and password not in framing
    )


def leaks(password: str, *texts: str) -> list[str]:
    """The texts that hold ``password``: in a JSON text, in one of its values as decoded (escapes
    undone); in any other text, anywhere."""
    found = []
    for text in texts:
        try:
            document = json.loads(text)
        except ValueError:
            if password in text:
                found.append(text)
            continue
        if any(password in value for value in values_in(document)):
            found.append(text)
    return found


def values_in(document: object) -> Iterator[str]:
    """Every string value of a JSON document, as decoded."""
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for value in document.values():
            yield from values_in(value)
    elif isinstance(document, list):
        for value in document:
            yield from values_in(value)


def without_query_ids(lines: list[str]) -> list[str]:
    """Log lines without the driver's random query ids, which may spell a short password by chance."""
    return [re.sub(r"query_id=[0-9a-f-]+", "query_id=", line) for line in lines]


@contextmanager
def fresh_secrets() -> Iterator[None]:
    """Each example starts with no password known, as a new process does: a password registered
    by an earlier example must not mask this one's output for it."""
    saved = set(config._SECRETS)
    config._SECRETS.clear()
    try:
        yield
    finally:
        config._SECRETS.clear()
        config._SECRETS.update(saved)


class Records(logging.Handler):
    """Every log record of every logger, formatted, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def debug_logging() -> Iterator[Records]:
    root = logging.getLogger()
    records, level = Records(), root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(records)
        root.setLevel(level)


@pytest.fixture
def framing(project: Project) -> str:
    """Everything the property test's commands print and log for a URL whose password is known
    and spelled nowhere else: the text its outputs are made of."""
    url = "clickhouse://u:Zq9-Zq9-Zq9@127.0.0.1:1/db"
    with fresh_secrets(), debug_logging() as records:
        plain = project.run("--url", url, "-v", "current")
        as_json = project.run("--url", url, "-v", "current", "--json")
    return "\n".join([plain.output, as_json.output, *without_query_ids(records.lines)])


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    password=PASSWORDS,
    encoded=st.booleans(),
    # chdb:// only alone: with a slash more or less it is a valid embedded path (see below).
    mutations=st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=2, unique=True).filter(
        lambda names: "chdb scheme" not in names or len(names) == 1
    ),
    junk=st.one_of(st.none(), st.tuples(st.text(min_size=1, max_size=4), st.integers(min_value=0))),
)
def test_no_url_shows_its_password(
    project: Project,
    framing: str,
    password: str,
    encoded: bool,
    mutations: list[str],
    junk: tuple[str, int] | None,
) -> None:
    written = quote(password, safe="") if encoded else password
    url = f"clickhouse://u:{written}@127.0.0.1:1/db"
    for name in mutations:
        url = MUTATIONS[name](url)
    if junk is not None:  # junk anywhere after the password: in the host, port, database, query
        inserted, at = junk
        start = url.rfind("@") + 1
        at = start + at % (len(url) - start + 1)
        url = url[:at] + inserted + url[at:]
    # This process has its engine open: a URL naming another embedded path must never run here.
    if url.lower().startswith("chdb:"):
        assert url[5:7] == "//" and url[7:8] != "/", url  # chdb://u:...@host names a host: refused
    with fresh_secrets(), debug_logging() as records:
        plain = project.run("--url", url, "-v", "current")
        as_json = project.run("--url", url, "-v", "current", "--json")
    for result in (plain, as_json):
        assert result.exit_code in (2, 3), (url, result.output)
        assert len(result.stderr.splitlines()) == 1, (url, result.stderr)
        assert result.stderr.startswith("k2-migrate: error: "), (url, result.stderr)
    if result.exit_code == 3:
        assert "cannot reach ClickHouse" in result.stderr
    if not encoded and any(c in password for c in "@/?#[]") and "no scheme" not in mutations:
        assert result.exit_code == 2, url  # an unencoded delimiter in the password is refused
    document = json.loads(as_json.stdout)
    assert (document["ok"], document["exit_code"]) == (False, as_json.exit_code)
    if password_is_checkable(password, written, url, framing):
        outputs = [
            plain.stdout,
            plain.stderr,
            as_json.stdout,
            as_json.stderr,
            *without_query_ids(records.lines),
        ]
        assert not leaks(password, *outputs), url


#: Broken URLs whose passwords all hold "Hunt", "er2" and "x9": no fragment of it may show.
BROKEN = [
    "clickhouse:/u:Hunter2-x9@127.0.0.1:1/db",
    "clickhouse://u:Hunter2-x9@[::1/db",
    "clickhouse://u:Hunt@er2/x9@127.0.0.1:1/db",
]


@pytest.mark.parametrize("url", BROKEN)
def test_a_real_process_names_the_mistake_and_hides_the_password(tmp_path: Path, url: str) -> None:
    done = k2_migrate(tmp_path / "db", "--url", url, "-v", "current", "--json", env={}, timeout_s=60)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("k2-migrate: error: ") and "***@" in line
    assert json.loads(done.stdout)["error"] == line.removeprefix("k2-migrate: error: ")
    for fragment in ("Hunt", "er2", "x9"):
        assert not leaks(fragment, done.stdout, done.stderr), fragment


def test_debug_logging_of_a_real_process_holds_no_password(tmp_path: Path) -> None:
    """The standard logging at DEBUG (urllib3's connection lines, alembic's, ...) over a failed
    connection, with the password in the URL and in the environment."""
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG); from k2_migrations.cli import main; main()"
    )
    url = "clickhouse://u:Url-S3cret-1@127.0.0.1:1/db"
    done = subprocess.run(
        [sys.executable, "-c", code, "-c", str(ROOT / "alembic.ini"), "-v", "--url", url, "upgrade", "head"],
        check=False,
        capture_output=True,
        text=True,
        env=environment({"K2_MIGRATE_PASSWORD": "Env-S3cret-2"}),
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert "cannot reach ClickHouse at clickhouse://u:***@127.0.0.1:1/db" in done.stderr
    assert "INFO:alembic" in done.stderr  # the logging was on: its silence about the password means something
    assert not leaks("S3cret", done.stdout, done.stderr)


# -- across processes, on an embedded engine ------------------------------------------------------

URL_SECRET = "Url-S3cret-1"
ENV_SECRET = "Env-S3cret-2"
FILE_SECRET = "File-S3cret-3"
#: Literals in a revision's SQL: what mask_secrets promises to mask there (a PASSWORD literal,
#: ``password = '...'`` in a comment) — see config._SQL_SECRET.
SQL_SECRET = "S3cr3t-xyz"
COMMENT_SECRET = "S3cr3t-cmt"
SECRETS = (URL_SECRET, ENV_SECRET, FILE_SECRET, SQL_SECRET, COMMENT_SECRET)

#: The revisions read the source's password the way k2-migrate does: K2_MIGRATE_PASSWORD, else the file.
PASSWORD = (
    "import os, pathlib\n"
    "password = os.environ.get('K2_MIGRATE_PASSWORD') or "
    "pathlib.Path(os.environ['K2_MIGRATE_PASSWORD_FILE']).read_text().strip()\n"
)
COLUMNS = "(id UInt64, v String) PRIMARY KEY id"
UPGRADE = (
    PASSWORD
    + "op.create_database('sx')\n"
    + "op.execute_sql('CREATE TABLE IF NOT EXISTS sx.src (id UInt64, v String) ENGINE = MergeTree ORDER BY id')\n"
    + f'op.execute_sql("""-- rotated: password = \'{COMMENT_SECRET}\'\n'
    + f"CREATE DICTIONARY IF NOT EXISTS sx.lookup {COLUMNS}\n"
    + f"SOURCE(CLICKHOUSE(USER 'reader' PASSWORD '{SQL_SECRET}' DB 'sx' TABLE 'src')) LAYOUT(FLAT()) LIFETIME(0)\"\"\")\n"
    + f'op.execute_sql(f"CREATE DICTIONARY IF NOT EXISTS sx.mirror {COLUMNS} '
    + "SOURCE(CLICKHOUSE(USER 'migrator' PASSWORD '{password}' DB 'sx' TABLE 'src')) LAYOUT(FLAT()) LIFETIME(0)\")\n"
    + "op.capture_definition('sx', 'lookup', 'mirror')\n"
)
#: A typo, the PASSWORD keyword left out: ClickHouse's syntax error quotes the SQL from the
#: password on, with no keyword before it for a SQL pattern to find.
FAILING = (
    PASSWORD
    + f'op.execute_sql(f"CREATE DICTIONARY IF NOT EXISTS sx.broken {COLUMNS} '
    + "SOURCE(CLICKHOUSE(USER 'migrator' '{password}' DB 'sx' TABLE 'src')) LAYOUT(FLAT()) LIFETIME(0)\")\n"
)

READ_BACK = """
import json, sys, clickhouse_connect
client = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1])
tables = {}
for table in ('k2_migrations_journal', 'k2_migrations_snapshots'):
    rows = client.query(f'SELECT * FROM k2_migrations.{table}').result_rows
    tables[table] = [[str(value) for value in row] for row in rows]
print(json.dumps(tables))
"""


def read_migrations_database(path: Path) -> dict[str, list[list[str]]]:
    """The journal and snapshot rows, read by a process of their own (one chDB path per process)."""
    done = subprocess.run(
        [sys.executable, "-c", READ_BACK, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=environment({}),
        timeout=120,
    )
    tables: dict[str, list[list[str]]] = json.loads(done.stdout)
    return tables


@pytest.mark.skipif(bool(SERVER_URL), reason="runs k2-migrate processes on an embedded engine of its own")
def test_secrets_stay_out_of_every_output_and_table(project: Project, tmp_path: Path) -> None:
    project.write_revision("s1", None, UPGRADE, "op.drop_database('sx')")
    project.write_revision("s2", "s1", FAILING, "")
    secret_file = tmp_path / "password"
    secret_file.write_text(FILE_SECRET + "\n")
    from_environment = {"K2_MIGRATE_PASSWORD": ENV_SECRET}
    from_file = {"K2_MIGRATE_PASSWORD_FILE": str(secret_file)}
    path = tmp_path / "engine"

    def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
        done = k2_migrate(path, "-c", str(project.root / "alembic.ini"), *args, env=env, timeout_s=120)
        return done.returncode, done.stdout, done.stderr

    server = f"clickhouse://u:{URL_SECRET}@127.0.0.1:1/db"
    runs = {
        "plan": run(from_environment, "plan", "s1"),
        "upgrade --sql": run(from_environment, "upgrade", "s1", "--sql"),
        # The command line, journaled with every row, holds a server URL and its password (the
        # later --url, the embedded engine, wins).
        "upgrade": run(from_environment, "--url", server, "--url", f"chdb://{path}", "-v", "upgrade", "s1"),
        "failing upgrade": run(from_file, "-v", "upgrade", "head", "--json"),
        "log": run(from_environment, "log"),
        "log --json": run(from_file, "log", "--json"),
        "server": run(from_environment, "--url", server, "-v", "upgrade", "--json"),
    }
    codes = {name: code for name, (code, _, _) in runs.items()}
    expected = {name: 0 for name in runs} | {"failing upgrade": 6, "server": 3}
    assert codes == expected, {name: err[-600:] for name, (_, _, err) in runs.items()}
    # What is checked below is there: the revisions' SQL, the syntax error, the captures.
    assert "PASSWORD '***'" in runs["plan"][1] and "PASSWORD '***'" in runs["upgrade --sql"][1]
    assert "SYNTAX_ERROR" in runs["failing upgrade"][2]
    tables = read_migrations_database(path)
    journal = json.dumps(tables["k2_migrations_journal"])
    assert "SOURCE(CLICKHOUSE" in journal and "SYNTAX_ERROR" in journal
    assert "--url clickhouse://u:***@127.0.0.1:1/db" in journal
    assert {"sx.lookup", "sx.mirror"} <= {row[2] for row in tables["k2_migrations_snapshots"]}
    for secret in SECRETS:
        for name, (_, stdout, stderr) in runs.items():
            assert not leaks(secret, stdout, stderr), (secret, name, stdout + stderr)
        for table, rows in tables.items():
            assert not leaks(secret, json.dumps(rows, ensure_ascii=False)), (secret, table)


def test_a_password_that_spells_json_leaves_every_document_valid() -> None:
    """Masking works value by value: a password such as ``fals`` or ``null`` must not break the JSON
    it appears in (found by the property test above)."""
    from k2_migrations.output.jsondoc import dump

    with fresh_secrets():
        for password in ("fals", "null", '": "', "true"):
            config.register_secret(password)
            document = json.loads(dump({"ok": False, "error": f"login as u:{password} refused", "n": None}))
            assert document["ok"] is False and document["n"] is None
            assert password not in document["error"] and "***" in document["error"]


def test_an_error_quoting_a_control_character_stays_one_line(project: Project) -> None:
    """Found by the property test: an unknown URL option spelled with ``\\x85`` (a line break to
    Python's splitlines and to many terminals) split the error in two."""
    result = project.run("--url", "clickhouse://u:Zq9-pw@127.0.0.1:1/db?\x85colour=red", "current")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("k2-migrate: error: unknown URL option(s) \\x85colour") and "Zq9-pw" not in line
