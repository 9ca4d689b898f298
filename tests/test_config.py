"""URL parsing for every form, password sources, and masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2_migrations.config import default_target, mask_secrets, parse_url
from k2_migrations.errors import UsageError


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
        ("clickhouse:///db", "names no host"),
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


def test_bad_url_error_never_shows_the_password() -> None:
    with pytest.raises(UsageError) as caught:
        parse_url("clickhouse://u:hunter2@h:nope/db", {})
    assert "hunter2" not in caught.value.message


def test_missing_password_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="K2_MIGRATE_PASSWORD_FILE"):
        parse_url("clickhouse://u@h/db", {"K2_MIGRATE_PASSWORD_FILE": str(tmp_path / "missing")})


def test_mask_secrets_scrubs_urls_and_known_passwords() -> None:
    parse_url("clickhouse://u:topsecret-42@h/db", {})
    assert mask_secrets("x clickhouse://a:b@c/d y") == "x clickhouse://a:***@c/d y"
    assert mask_secrets("error near topsecret-42") == "error near ***"
