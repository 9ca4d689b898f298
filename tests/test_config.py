"""URL parsing for every form, password sources, and masking; where each setting comes from."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from k2_migrations.config import default_target, mask_secrets, parse_url
from k2_migrations.errors import UsageError
from tests.conftest import SERVER_URL, Project
from tests.support.engine_query import held_by_another_program
from tests.support.kill_harness import environment


def test_http_url_with_every_part() -> None:
    t = parse_url("clickhouse://migrator:s3cret@ch.example:8124/analytics", {})
    assert (t.kind, t.host, t.port, t.secure, t.username, t.password, t.database) == (
        "server",
        "ch.example",
        8124,
        False,
        "migrator",
        "s3cret",
        "analytics",
    )
    assert t.display() == "clickhouse://migrator:***@ch.example:8124/analytics"


def test_http_defaults() -> None:
    t = parse_url("clickhouse://ch", {})
    assert (t.port, t.username, t.database, t.password) == (8123, "default", "default", "")


def test_https_verifies_certificates_unless_told() -> None:
    secure = parse_url("clickhouses://u@ch/db", {})
    assert (secure.secure, secure.port, secure.verify) == (True, 8443, True)
    unverified = parse_url("clickhouses://u@ch/db?verify=false", {})
    assert unverified.verify is False
    with_ca = parse_url("clickhouses://u@ch/db?ca_cert=/etc/ca.pem", {})
    assert with_ca.ca_cert == "/etc/ca.pem" and with_ca.verify is True


def test_embedded_absolute_and_relative(tmp_path: Path) -> None:
    absolute = parse_url("chdb:///var/lib/k2/chdb", {})
    assert absolute.embedded and absolute.path == Path("/var/lib/k2/chdb")
    relative = parse_url("chdb:data/k2", {}, cwd=tmp_path)
    assert relative.path == tmp_path / "data" / "k2"
    assert default_target(tmp_path).path == tmp_path / ".k2-migrate" / "chdb"
    configured = parse_url("chdb:///data/k2?config-file=/etc/k2/chdb.xml", {})
    assert configured.engine_options == (("config-file", "/etc/k2/chdb.xml"),)
    assert configured.display() == "chdb:///data/k2?config-file=/etc/k2/chdb.xml"


def test_password_from_environment_and_file(tmp_path: Path) -> None:
    assert parse_url("clickhouse://u@h/db", {"K2_MIGRATE_PASSWORD": "from-env"}).password == "from-env"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert parse_url("clickhouse://u@h/db", {"K2_MIGRATE_PASSWORD_FILE": str(secret)}).password == "from-file"
    # The URL's own password wins.
    assert parse_url("clickhouse://u:inline@h/db", {"K2_MIGRATE_PASSWORD": "env"}).password == "inline"


def test_percent_encoded_password_is_decoded_and_masked() -> None:
    t = parse_url("clickhouse://u:p%40ss%2Fword@h/db", {})
    assert t.password == "p@ss/word"
    assert "p@ss/word" not in mask_secrets("login failed for p@ss/word")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://u@h/db", "unknown URL scheme 'mysql'"),
        ("no-scheme-here", "is not a URL"),
        ("clickhouse://u@h:notaport/db", "port"),
        ("clickhouse://u@h:65536/db", "port .* is not a number from 1 to 65535"),
        ("clickhouse://u@h:/db", "port"),
        ("clickhouse:///db", "names no host"),
        ("clickhouse://u@/db", "names no host"),
        ("clickhouse:/u@h/db", "needs two slashes after clickhouse:"),
        ("clickhouse:u@h/db", "needs two slashes"),
        ("clickhouse://u@[::1/db", r"IPv6 address .* has no closing '\]'"),
        ("clickhouse://u@::1]/db", r"unbalanced '\]'"),
        ("clickhouse://u@::1/db", "must be in brackets"),
        ("clickhouse://u@[nope]/db", "is not an IPv6 address"),
        ("clickhouse://u@[::1]x/db", "after the IPv6 address"),
        ("clickhouse://u@h st/db", "not a host name"),
        ("clickhouse://u@h/db#frag", "'#' part"),
        ("clickhouse://u:p%4@h/db", "bad percent-encoding"),
        ("clickhouse://u:p%FF@h/db", "bad percent-encoding"),
        ("clickhouse://u:p@ss@h/db", "percent-encode it"),
        ("clickhouse://u:p/ss@h/db", "percent-encode it"),
        ("chdb://host/path", "names a host"),
        ("chdb:", "needs a path"),
        ("clickhouse://u@h/db?verify=maybe", "not a boolean"),
        ("clickhouse://u@h/db?colour=red", "unknown URL option"),
        ("clickhouse://u@h/bad-name", "not a plain identifier"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_url(url, {})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("clickhouse://u:hunter2@h:nope/db", "'clickhouse://u:***@h:nope/db'"),
        # One slash: urllib finds no host and no password; the message must still hide it.
        ("clickhouse:/u:hunter2@h/db", "'clickhouse:/***@h/db'"),
        # An unencoded '@' or '/': the password runs to the last '@', user name included.
        ("clickhouse://u:hun@ter2@h/db", "'clickhouse://***@h/db'"),
        ("clickhouse://u:hun/ter2@h/db", "'clickhouse://***@h/db'"),
        ("clickhouse://u:hunter2@[::1/db", "'clickhouse://u:***@[::1/db'"),
        ("clickhuose://u:hunter2@h/db", "'clickhuose://***@h/db'"),
        # No '@' at all: a "port" that is no number may be the password.
        ("clickhouse://u:hunter2", "'clickhouse://u:***'"),
    ],
)
def test_bad_url_error_shows_the_url_without_its_password(url: str, shown: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_url(url, {})
    message = mask_secrets(caught.value.message)  # as the CLI prints it
    assert shown in message
    for fragment in ("hun", "ter2"):
        assert fragment not in message


def test_ipv6_host_and_odd_user_names_display_as_a_url() -> None:
    t = parse_url("clickhouse://mig%20rator:pw%2Fd@[::1]:9000/db", {})
    assert (t.host, t.port, t.username, t.password) == ("::1", 9000, "mig rator", "pw/d")
    assert t.display() == "clickhouse://mig%20rator:***@[::1]:9000/db"


def test_missing_password_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="K2_MIGRATE_PASSWORD_FILE"):
        parse_url("clickhouse://u@h/db", {"K2_MIGRATE_PASSWORD_FILE": str(tmp_path / "missing")})


def test_mask_secrets_scrubs_urls_and_known_passwords() -> None:
    parse_url("clickhouse://u:topsecret-42@h/db", {})
    assert mask_secrets("x clickhouse://a:b@c/d y") == "x clickhouse://a:***@c/d y"
    assert mask_secrets("x clickhouse:/a:b@c@d/e y") == "x clickhouse:/a:***@d/e y"
    assert mask_secrets("error near topsecret-42") == "error near ***"


def test_mask_secrets_scrubs_escaped_forms_of_a_known_password() -> None:
    parse_url("clickhouse://u:Qu%22ote%5C%C3%A9t%C3%A9@h/db", {})  # Qu"ote\été
    assert mask_secrets(json.dumps({"error": 'near Qu"ote\\été'})) == '{"error": "near ***"}'
    assert mask_secrets(repr('near Qu"ote\\été')) == "'near ***'"


def test_short_passwords_are_masked_in_urls_but_not_in_free_text() -> None:
    t = parse_url("clickhouse://u:abc@h/db", {})
    assert t.display() == "clickhouse://u:***@h:8123/db"
    assert mask_secrets("a table abc") == "a table abc"


def test_mask_secrets_promise_for_sql() -> None:
    """A PASSWORD literal (dictionary sources, named collections), ``password = '...'`` (also in a
    comment) and IDENTIFIED [WITH method] BY '...' are masked; once seen, the literal is masked
    anywhere, as in the excerpt of a syntax error that starts after the keyword."""
    sql = (
        "-- rotated: password = 'Cmt-s3cret'\n"
        "CREATE DICTIONARY d (id UInt64) PRIMARY KEY id SOURCE(CLICKHOUSE(USER 'r' PASSWORD 'Dict''s3cret'))"
        " LAYOUT(FLAT()) LIFETIME(0);\n"
        "CREATE USER u IDENTIFIED WITH sha256_password BY 'User-s3cret';\n"
        "ALTER USER v IDENTIFIED BY 'Alter-s3cret'"
    )
    masked = mask_secrets(sql)
    assert masked.count("'***'") == 4 and "s3cret" not in masked
    assert "USER 'r'" in masked and "CREATE USER u" in masked  # only the passwords
    assert mask_secrets("failed at position 90 ('User-s3cret')") == "failed at position 90 ('***')"
    assert mask_secrets("COMMENT 'password rotated'") == "COMMENT 'password rotated'"


def test_environment_password_is_masked_even_for_the_embedded_engine(tmp_path: Path) -> None:
    """The embedded engine takes no password, but a revision may put it in SQL all the same."""
    secret = tmp_path / "pw"
    secret.write_text("File-s3cret-77\n")
    parse_url("chdb:///data", {"K2_MIGRATE_PASSWORD": "Env-s3cret-77"})
    parse_url("chdb:///data", {"K2_MIGRATE_PASSWORD_FILE": str(secret)})
    parse_url("chdb:///data", {"K2_MIGRATE_PASSWORD_FILE": str(tmp_path / "missing")})  # not an error
    assert (
        mask_secrets("SOURCE(CLICKHOUSE('Env-s3cret-77' 'File-s3cret-77'))")
        == "SOURCE(CLICKHOUSE('***' '***'))"
    )


# -- where each setting comes from: flag, else environment, else alembic.ini, else the default -------

PROJECT_INI = (
    "[alembic]\nscript_location = k2_migrations:alembic_env\nversion_locations = %(here)s/versions\n"
)
#: One empty revision, so that upgrade head writes the version state.
EMPTY_REVISION = (
    '"""e1"""\nrevision = "e1"\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n\n\n'
    "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
)
#: Runs on an embedded engine of its own; the session's engine stays in this process.
own_engine = pytest.mark.skipif(bool(SERVER_URL), reason="real processes on an embedded engine of their own")


def layered_project(root: Path, section: dict[str, str]) -> Path:
    """A project whose alembic.ini has ``section`` as its [k2_migrate]."""
    (root / "versions").mkdir(parents=True, exist_ok=True)
    (root / "versions" / "e1.py").write_text(EMPTY_REVISION)
    keys = "".join(f"{key} = {value}\n" for key, value in section.items())
    (root / "alembic.ini").write_text(PROJECT_INI + "\n[k2_migrate]\n" + keys)
    return root


def k2(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2_migrations", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env=environment(env),
    )


#: (flag, environment, ini) given, and which of them must win; None for the default.
LAYERS = [
    (True, True, True, "flag"),
    (False, True, True, "env"),
    (False, False, True, "ini"),
    (False, False, False, None),
]


def layered_args(
    root: Path, flag: str, env: str, ini: str, values: dict[str, str], given: tuple[bool, bool, bool]
) -> tuple[list[str], dict[str, str]]:
    """The project, arguments and environment that give a setting in the layers ``given``."""
    layered_project(root, {ini: values["ini"]} if given[2] else {})
    args = [flag, values["flag"]] if given[0] else []
    return args, ({env: values["env"]} if given[1] else {})


@own_engine
@pytest.mark.parametrize(("flag", "env", "ini", "winner"), LAYERS)
def test_url_comes_from_flag_then_environment_then_ini(
    tmp_path: Path, flag: bool, env: bool, ini: bool, winner: str | None
) -> None:
    urls = {layer: f"clickhouse://u@127.0.0.1:1/from_{layer}" for layer in ("flag", "env", "ini")}
    args, environ = layered_args(tmp_path, "--url", "K2_MIGRATE_URL", "url", urls, (flag, env, ini))
    done = k2(tmp_path, *args, "current", env=environ)
    if winner is None:  # the embedded engine beside alembic.ini
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"chdb://{tmp_path}/.k2-migrate/chdb: base"), done.stdout
        return
    assert done.returncode == 3, done.stderr
    [line] = done.stderr.splitlines()
    assert f"cannot reach ClickHouse at clickhouse://u@127.0.0.1:1/from_{winner} " in line


@own_engine
def test_migrations_database_comes_from_flag_then_environment_then_ini(tmp_path: Path) -> None:
    """Four runs on one engine, each given the setting in fewer layers; each writes its version
    state where the winning layer says, so the databases holding one tell which layer won each time."""
    engine = tmp_path / "engine"
    names = {"flag": "db_from_flag", "env": "db_from_env", "ini": "db_from_ini"}
    for flag, env, ini, _ in LAYERS:
        args, environ = layered_args(
            tmp_path,
            "--migrations-database",
            "K2_MIGRATE_DATABASE",
            "migrations_database",
            names,
            (flag, env, ini),
        )
        done = k2(tmp_path, "--url", f"chdb://{engine}", *args, "upgrade", "head", env=environ)
        assert done.returncode == 0, done.stderr
    read = (
        "import sys, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1])\n"
        "rows = c.query(\"SELECT database FROM system.tables WHERE name = 'k2_migrations_versions'\").result_rows\n"
        "print(' '.join(sorted(r[0] for r in rows)))\n"
    )
    databases = subprocess.run(
        [sys.executable, "-c", read, str(engine)],
        capture_output=True,
        text=True,
        check=True,
        env=environment(),
        timeout=120,
    ).stdout.split()
    assert databases == sorted([*names.values(), "k2_migrations"])


@pytest.fixture
def held_engine(tmp_path: Path) -> Iterator[Path]:
    """An embedded path another process has open: a run waits for it as long as for the lock."""
    path = tmp_path / "held"
    with held_by_another_program(path):
        yield path


@own_engine
def test_lock_timeout_comes_from_flag_then_environment_then_ini(tmp_path: Path, held_engine: Path) -> None:
    """How long a run waits for the held engine before giving up says which layer won: the losing
    layers would have it wait 30 s."""
    for (flag, env, ini, winner), seconds in zip(LAYERS, ("1", "2", "3", None), strict=True):
        values = {"flag": "30", "env": "30", "ini": "30"} | ({winner: seconds} if winner and seconds else {})
        args, environ = layered_args(
            tmp_path / "project",
            "--lock-timeout",
            "K2_MIGRATE_LOCK_TIMEOUT",
            "lock_timeout",
            values,
            (flag, env, ini),
        )
        done = k2(tmp_path / "project", "--url", f"chdb://{held_engine}", *args, "current", env=environ)
        assert done.returncode != 0
        [line] = done.stderr.splitlines()
        assert "in use by another process" in line, line
        waited = re.search(r"\(waited (\d+)s\)", line)
        if winner is None:  # 0: fail at once
            assert waited is None, line
        else:
            assert waited is not None and seconds is not None, line
            assert int(seconds) <= int(waited.group(1)) <= int(seconds) + 2, line


@pytest.mark.parametrize(
    ("env", "edit", "message"),
    [
        (
            {"K2_MIGRATE_LOCK_TIMEOUT": "soon"},
            ("", ""),
            "K2_MIGRATE_LOCK_TIMEOUT: 'soon' is not a valid float range; fix or remove it",
        ),
        (
            {},
            ("lock_expiry = 60", "lock_expiry = 0"),
            "lock_expiry in [k2_migrate] of alembic.ini: 0.0 is not in the range x>0",
        ),
        (
            {},
            ("lock_timeout = 0", "lock_timout = 5"),
            "unknown key 'lock_timout' in [k2_migrate] of alembic.ini; the keys are ",
        ),
        ({}, ("lock_timeout = 0", "lock_timeout"), "cannot read alembic.ini: "),
        (
            {},
            ("lock_timeout = 0", "lock_timeout = 0\nlock_timeout = 1"),
            "cannot read alembic.ini: While reading from 'alembic.ini' [line ",
        ),
    ],
)
def test_a_setting_that_cannot_be_used_is_one_line_naming_where_it_is(
    project: Project, env: dict[str, str], edit: tuple[str, str], message: str
) -> None:
    config = project.root / "alembic.ini"
    config.write_text(config.read_text().replace(*edit))
    done = project.run("current", env=env)
    assert done.exit_code == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("k2-migrate: error: " + message), line


def test_an_alembic_message_about_a_revision_is_not_taken_for_a_password() -> None:
    message = "Can't locate revision identified by 'abcd1'"
    assert mask_secrets(message) == message
    assert mask_secrets("abcd1 again") == "abcd1 again"  # and the id was not registered as a secret
    assert mask_secrets("CREATE USER u IDENTIFIED BY 'S3cret-pw'") == "CREATE USER u IDENTIFIED BY '***'"
