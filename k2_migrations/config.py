"""Where to connect and how: URL parsing, password sources and masking.

A target is given as a URL, from (first wins) ``--url``, ``K2_MIGRATE_URL``, or ``url`` in the
``[k2_migrate]`` section of alembic.ini. With none of them, the embedded engine in
``.k2-migrate/chdb`` beside alembic.ini is used, so a fresh checkout works with no server.

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
any text (error messages, SQL, journal entries) before that text leaves the process. In the URL it
must be percent-encoded where it holds ``@ / ? # [ ]`` (``%40`` ...); a URL that does not parse is
refused with a message that shows it with the password masked (:func:`mask_url`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote

from k2_migrations.errors import UsageError

DEFAULT_EMBEDDED_PATH = Path(".k2-migrate") / "chdb"
DEFAULT_MIGRATIONS_DATABASE = "k2_migrations"
#: Cluster mode: how long an ON CLUSTER statement waits for every host before it names those behind (s).
DEFAULT_DDL_TIMEOUT_S = 300.0
#: Seconds without a heartbeat after which a lock holder counts as dead (``--lock-expiry``).
DEFAULT_LOCK_EXPIRY_S = 60.0

_SCHEMES = {"clickhouse": 8123, "clickhouses": 8443}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST = re.compile(r"^[A-Za-z0-9_.-]+$")

# Every password this process has seen, so that mask_secrets can scrub it from any text.
_SECRETS: set[str] = set()

#: Shorter secrets are not scrubbed from free text: masking every "ab" would garble each message and
#: hide nothing a guesser could not find anyway. URLs are masked by structure, whatever the length.
MIN_SECRET_LENGTH = 4

#: A password in SQL as ClickHouse writes it: the single-quoted literal after ``PASSWORD`` (a
#: dictionary's or a named collection's source, also ``password = '...'``, as in a comment) or after
#: ``IDENTIFIED [WITH method] BY`` in a CREATE/ALTER USER (not any "identified by": Alembic says
#: "revision identified by 'x'").
_SQL_SECRET = re.compile(
    r"(\b(?:PASSWORD\s*=?|USER\b[^;']*?\bIDENTIFIED\s+(?:WITH\s+\w+\s+)?BY)\s*')((?:[^'\\]|\\.|'')*)'",
    re.IGNORECASE,
)
#: ``scheme:`` (any number of slashes) ``user:password@`` in free text, e.g. a driver's message.
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*:/*)([^\s:/@]*):\S*@")
#: What RFC 3986 forbids unescaped in ``user:password``: each would move where the host starts.
_URL_DELIMITERS = "@/?#[]"
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def register_secret(secret: str) -> None:
    """Remember a secret so that :func:`mask_secrets` removes it from anything printed.

    The escaped forms are remembered too: ``--json`` output and ``repr`` in a message escape quotes,
    backslashes and non-ASCII characters, and the escaped text still gives the password away.
    """
    if len(secret) >= MIN_SECRET_LENGTH:
        _SECRETS.update({secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]})


def mask_secrets(text: str) -> str:
    """Replace with ``***`` every known secret, the password of any ``scheme://user:password@`` and
    every SQL password literal (see ``_SQL_SECRET``).

    A password found in SQL is registered as it is masked, so that a later echo of it without its
    keyword — the excerpt of a ClickHouse syntax error, say — is masked too.
    """
    for match in _SQL_SECRET.finditer(text):
        register_secret(match.group(2))
    text = _SQL_SECRET.sub(r"\1***'", text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_USERINFO.sub(r"\1\2:***@", text)


def mask_url(url: str) -> str:
    """``url`` with its password as ``***``, for messages about a URL that may not even parse.

    urllib cannot be relied on here: the URLs that need a message are the malformed ones. The
    ``user:password`` part is taken to be everything between ``scheme:`` and its slashes and the
    last ``@``, since a password may hold any character, ``@`` and ``/`` included. Unless the URL
    starts with a known scheme and ``//`` and the part is a plain ``user:password``, all of it is
    masked, user included: then nothing says where the user name ends.
    """
    prefix, userinfo, rest = _split_userinfo(url)
    if userinfo is None:
        return mask_secrets(prefix + _mask_bare_port(rest))
    if _readable(prefix, userinfo):
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:***" if colon else user
    else:
        shown = "***"
    return mask_secrets(f"{prefix}{shown}@{rest}")


def _readable(prefix: str, userinfo: str) -> bool:
    """Whether ``userinfo`` reads as ``user[:password]``: after a known scheme and ``//``, and with
    none of the characters that would move where the host starts."""
    scheme, _, slashes = prefix.partition(":")
    return scheme.lower() in _SCHEMES and slashes == "//" and not any(c in userinfo for c in _URL_DELIMITERS)


def _register_url_password(url: str) -> None:
    """Register what may be the password in ``url`` before anything can fail on it, so that no
    message shows it, not even spelled by the message's own words (a password ``host`` in the hint
    ``user@host``). Where the part does not read as ``user:password``, all of it counts."""
    prefix, userinfo, _ = _split_userinfo(url)
    if userinfo is None:
        return
    _, colon, password = userinfo.partition(":")
    if colon:
        register_secret(password)
        register_secret(unquote(password))
    if not _readable(prefix, userinfo):
        register_secret(userinfo)


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """``(scheme: and slashes, user:password or None, the host part on)``."""
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/*", url)
    prefix = scheme.group(0) if scheme else ""
    rest = url[len(prefix) :]
    userinfo, at, host_part = rest.rpartition("@")
    return (prefix, userinfo, host_part) if at else (prefix, None, rest)


def _mask_bare_port(rest: str) -> str:
    """Mask a "port" that is not a number when no ``@`` is there: it may be a password whose
    ``@host`` was left out (``clickhouse://user:password``)."""
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    head, colon, port = authority.rpartition(":")
    if colon and port and not port.isdigit() and "]" not in port:
        return head + ":***" + rest[len(authority) :]
    return rest


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
        user = quote(self.username, safe="")
        auth = f"{user}:***@" if self.password else f"{user}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{auth}{host}:{self.port}/{self.database}"


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


def _register_environment_password(environ: dict[str, str]) -> None:
    """The embedded engine takes no password, but a revision may still put the configured one in
    its SQL (a dictionary's source): it is masked all the same. A password file that cannot be read
    is no error here, since nothing needs it."""
    with contextlib.suppress(UsageError):
        register_secret(_password_from_environment(environ))


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
    """Parse a target URL; the password may also come from the environment.

    The parsing is our own rather than urllib's: urllib accepts or misreads many of the malformed
    URLs people type (a slash too few, an unencoded ``/`` in the password) and raises ValueError on
    others, while each must end in one line that names the mistake, never shows the password, and
    says what to do.
    """
    environ = dict(os.environ) if environ is None else environ
    cwd = cwd or Path.cwd()
    scheme_match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme == "chdb":
        _register_environment_password(environ)
    else:
        _register_url_password(url)
    shown = repr(mask_url(url))
    if not scheme_match:
        raise UsageError(f"{shown} is not a URL; use {_FORMS}")
    if scheme == "chdb":
        return _parse_embedded(url[scheme_match.end() :], cwd, shown)
    if scheme not in _SCHEMES:
        raise UsageError(f"unknown URL scheme {scheme!r} in {shown}; use {_FORMS}")
    form = f"use {scheme}://user@host:port/database"
    prefix, userinfo, host_part = _split_userinfo(url)
    slashes = len(prefix) - scheme_match.end()
    if slashes < 2:
        raise UsageError(f"{shown} needs two slashes after {scheme}:; {form}")
    user, password = _credentials(userinfo, shown) if userinfo is not None else ("", "")
    host, port, path, query = _split_host_part(host_part if slashes == 2 else "", shown, form)
    password = password or _password_from_environment(environ)
    register_secret(password)
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"verify", "ca_cert"})
    if unknown:
        raise UsageError(f"unknown URL option(s) {', '.join(unknown)} in {shown}; known: verify, ca_cert")
    database = path.strip("/") or "default"
    check_identifier(database, "database")
    return Target(
        kind="server",
        host=host,
        port=port or _SCHEMES[scheme],
        secure=scheme == "clickhouses",
        verify=_flag(options, "verify", True),
        ca_cert=options["ca_cert"][-1] if "ca_cert" in options else None,
        username=user or "default",
        password=password,
        database=database,
    )


_FORMS = "clickhouse://user@host:8123/db, clickhouses://... or chdb:///absolute/path"


def _credentials(userinfo: str, shown: str) -> tuple[str, str]:
    """The decoded user and password of ``user:password`` (already registered as a secret)."""
    raw_user, _, raw_password = userinfo.partition(":")
    if any(c in userinfo for c in _URL_DELIMITERS):
        raise UsageError(
            f"the user:password part of {shown} contains '@', '/', '?', '#', '[' or ']': "
            "percent-encode it (%40, %2F, %3F, %23, %5B, %5D) or give the password in K2_MIGRATE_PASSWORD"
        )
    try:
        if _PERCENT.search(userinfo):
            raise ValueError("a % not followed by two hex digits")
        return unquote(raw_user, errors="strict"), unquote(raw_password, errors="strict")
    except (ValueError, UnicodeDecodeError):  # UnicodeDecodeError: %XX bytes that are not UTF-8
        raise UsageError(
            f"bad percent-encoding in the user:password part of {shown}: each % must start a UTF-8 "
            "byte as %XX (a literal % is %25), or give the password in K2_MIGRATE_PASSWORD"
        ) from None


def _split_host_part(text: str, shown: str, form: str) -> tuple[str, int, str, str]:
    """``host[:port][/database][?options]`` -> (host, port or 0, path, query)."""
    if "#" in text:
        raise UsageError(f"{shown} has a '#' part, which means nothing here; remove it ({form})")
    authority, _, query = text.partition("?")
    authority, _, path = authority.partition("/")
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket:
            raise UsageError(f"the IPv6 address in {shown} has no closing ']'; write it as [::1]:8123")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"{host!r} in {shown} is not an IPv6 address; write one as [::1]:8123") from None
        if after and not after.startswith(":"):
            raise UsageError(f"unexpected {after!r} after the IPv6 address in {shown}; {form}")
        port_text = after[1:] if after else None
    else:
        if "[" in authority or "]" in authority:
            raise UsageError(f"unbalanced ']' in the host of {shown}; write an IPv6 address as [::1]:8123")
        if authority.count(":") > 1:
            raise UsageError(f"an IPv6 address must be in brackets, as in [::1]:8123 ({shown})")
        host, colon, port = authority.partition(":")
        port_text = port if colon else None
        if not host:
            raise UsageError(f"{shown} names no host; {form}")
        if not _HOST.match(host):
            raise UsageError(f"{host!r} in {shown} is not a host name or IP address; {form}")
    if port_text is None:
        return host, 0, path, query
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 < int(port_text) < 65536:
        raise UsageError(f"the port in {shown} is not a number from 1 to 65535; {form}")
    return host, int(port_text), path, query


def _parse_embedded(rest: str, cwd: Path, shown: str) -> Target:
    rest, _, query = rest.partition("?")
    options = tuple((key, values[-1]) for key, values in parse_qs(query).items())
    if rest.startswith("///"):
        path = Path(rest[2:])
    elif rest.startswith("//"):
        raise UsageError(
            f"{shown} names a host; the embedded engine takes chdb:///absolute/path or chdb:relative/path"
        )
    elif rest:
        path = cwd / rest
    else:
        raise UsageError("chdb: needs a path: chdb:///absolute/path or chdb:relative/path")
    return Target(kind="embedded", path=Path(os.path.normpath(path)), engine_options=options)


def default_target(base: Path | None = None, environ: dict[str, str] | None = None) -> Target:
    """The embedded engine in ``base`` (the configuration's directory), used when no URL is configured."""
    _register_environment_password(dict(os.environ) if environ is None else environ)
    return Target(kind="embedded", path=(base or Path.cwd()) / DEFAULT_EMBEDDED_PATH)


def check_identifier(name: str, what: str) -> str:
    """Refuse names that would need quoting: they are interpolated into DDL."""
    if not _IDENTIFIER.match(name):
        raise UsageError(f"{what} name {name!r} is not a plain identifier (letters, digits, underscore)")
    return name
