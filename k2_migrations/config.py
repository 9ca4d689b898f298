"""Where to connect and how: URL parsing, password sources and masking.

A target is given as a URL, from (first wins) ``--url``, ``K2_MIGRATE_URL``, or ``url`` in the
``[k2_migrate]`` section of alembic.ini. With none of them, the embedded engine in
``.k2-migrate/chdb`` under the working directory is used, so a fresh checkout works with no server.

URL forms::

    clickhouse://user:password@host:8123/database     HTTP
    clickhouses://user:password@host:8443/database    HTTPS, certificates verified
    clickhouses://...?verify=false                    HTTPS without certificate verification
    clickhouses://...?ca_cert=/path/ca.pem            HTTPS with a private CA
    chdb:///absolute/path                             embedded engine (chDB)
    chdb:relative/path                                embedded engine, relative to the working directory
    chdb:///path?config-file=/etc/k2/chdb.xml         embedded engine with chDB options (e.g. its
                                                      Kafka client settings in a config file)

The password may come from the URL, ``K2_MIGRATE_PASSWORD`` or a file named by
``K2_MIGRATE_PASSWORD_FILE``, so it never has to appear on a command line. It is kept out of every
string this module renders: :meth:`Target.display` masks it, and :func:`mask_secrets` scrubs it from
any text (error messages, SQL, journal entries) before that text leaves the process.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from k2_migrations.errors import UsageError

DEFAULT_EMBEDDED_PATH = Path(".k2-migrate") / "chdb"
DEFAULT_MIGRATIONS_DATABASE = "k2_migrations"

_SCHEMES = {"clickhouse": 8123, "clickhouses": 8443}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Every password this process has seen, so that mask_secrets can scrub it from any text.
_SECRETS: set[str] = set()


def register_secret(secret: str) -> None:
    """Remember a secret so that :func:`mask_secrets` removes it from anything printed."""
    if secret:
        _SECRETS.add(secret)


def mask_secrets(text: str) -> str:
    """Replace every known secret, and any ``user:password@`` in a URL, with ``***``."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return re.sub(r"(://[^:/@\s]+:)[^@\s]*@", r"\1***@", text)


@dataclass(frozen=True)
class Target:
    """A ClickHouse to migrate: a server over HTTP(S) or an embedded chDB data directory."""

    kind: str  # "server" or "embedded"
    database: str = "default"
    host: str = ""
    port: int = 0
    secure: bool = False
    verify: bool = True
    ca_cert: str | None = None
    username: str = "default"
    password: str = field(default="", repr=False)
    path: Path | None = None
    #: chDB engine options from the URL's query (``config-file=...``), embedded only.
    engine_options: tuple[tuple[str, str], ...] = ()

    @property
    def embedded(self) -> bool:
        return self.kind == "embedded"

    def display(self) -> str:
        """The URL with the password masked: safe for logs, errors and ``--json``."""
        if self.embedded:
            query = "&".join(f"{k}={v}" for k, v in self.engine_options)
            return f"chdb://{self.path}" + (f"?{query}" if query else "")
        scheme = "clickhouses" if self.secure else "clickhouse"
        auth = f"{self.username}:***@" if self.password else f"{self.username}@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.database}"


def _password_from_environment(environ: dict[str, str]) -> str:
    if environ.get("K2_MIGRATE_PASSWORD"):
        return environ["K2_MIGRATE_PASSWORD"]
    password_file = environ.get("K2_MIGRATE_PASSWORD_FILE")
    if password_file:
        try:
            return Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UsageError(
                f"cannot read K2_MIGRATE_PASSWORD_FILE {password_file!r}: {exc.strerror}; "
                "point it at a readable file holding only the password"
            ) from None
    return ""


def _flag(options: dict[str, list[str]], name: str, default: bool) -> bool:
    if name not in options:
        return default
    value = options[name][-1].lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"URL option {name}={value!r} is not a boolean; use {name}=true or {name}=false")


def parse_url(url: str, environ: dict[str, str] | None = None, cwd: Path | None = None) -> Target:
    """Parse a target URL; the password may also come from the environment."""
    environ = dict(os.environ) if environ is None else environ
    cwd = cwd or Path.cwd()
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise UsageError(
            f"{mask_secrets(url)!r} is not a URL; use clickhouse://user@host:8123/db, "
            "clickhouses://... or chdb:///absolute/path"
        )
    scheme = scheme.lower()
    if scheme == "chdb":
        return _parse_embedded(rest, cwd)
    if scheme not in _SCHEMES:
        raise UsageError(
            f"unknown URL scheme {scheme!r}; use clickhouse:// (HTTP), clickhouses:// (HTTPS) "
            "or chdb:///path (embedded)"
        )
    parts = urlsplit(url)
    try:
        port = parts.port or _SCHEMES[scheme]
    except ValueError:
        raise UsageError(f"the port in {mask_secrets(url)!r} is not a number") from None
    if not parts.hostname:
        raise UsageError(f"{mask_secrets(url)!r} names no host; use {scheme}://user@host:port/database")
    password = unquote(parts.password) if parts.password else _password_from_environment(environ)
    register_secret(password)
    if parts.password:
        register_secret(parts.password)
    options = parse_qs(parts.query)
    unknown = sorted(set(options) - {"verify", "ca_cert"})
    if unknown:
        raise UsageError(f"unknown URL option(s) {', '.join(unknown)}; known: verify, ca_cert")
    database = parts.path.strip("/") or "default"
    check_identifier(database, "database")
    secure = scheme == "clickhouses"
    return Target(
        kind="server",
        host=parts.hostname,
        port=port,
        secure=secure,
        verify=_flag(options, "verify", True),
        ca_cert=options["ca_cert"][-1] if "ca_cert" in options else None,
        username=unquote(parts.username) if parts.username else "default",
        password=password,
        database=database,
    )


def _parse_embedded(rest: str, cwd: Path) -> Target:
    rest, _, query = rest.partition("?")
    options = tuple((key, values[-1]) for key, values in parse_qs(query).items())
    if rest.startswith("///"):
        path = Path(rest[2:])
    elif rest.startswith("//"):
        raise UsageError(
            f"chdb:{rest} names a host; the embedded engine takes chdb:///absolute/path or chdb:relative/path"
        )
    elif rest:
        path = cwd / rest
    else:
        raise UsageError("chdb: needs a path: chdb:///absolute/path or chdb:relative/path")
    return Target(kind="embedded", path=Path(os.path.normpath(path)), engine_options=options)


def default_target(cwd: Path | None = None) -> Target:
    """The embedded engine under the working directory, used when no URL is configured."""
    return Target(kind="embedded", path=(cwd or Path.cwd()) / DEFAULT_EMBEDDED_PATH)


def check_identifier(name: str, what: str) -> str:
    """Refuse names that would need quoting: they are interpolated into DDL."""
    if not _IDENTIFIER.match(name):
        raise UsageError(f"{what} name {name!r} is not a plain identifier (letters, digits, underscore)")
    return name
