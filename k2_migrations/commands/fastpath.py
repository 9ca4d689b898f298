"""The no-op fast path of ``upgrade head``: nothing pending is learnt without Alembic and without the lock.

A deploy runs ``k2-migrate upgrade head`` every time, usually with nothing to do. The normal path
imports Alembic, SQLAlchemy and the dialect, loads every revision and takes the lock before it finds
that out; here it is found out from:

1. the script's heads, read from the revision files' headers with :mod:`ast`
   (:func:`k2_migrations.decisions.noop.read_header`), never importing them; each file's header is
   cached in ``.k2-migrate/script-heads.json`` beside alembic.ini by its stamp (path, inode, size,
   mtime and ctime in ns), written atomically, ignored when unreadable;
2. one query on a client without SQLAlchemy (:func:`k2_migrations.backends.open_client`): the
   migrations tables and their engines, the version record's heads with its newest ``seq``, every
   journal attempt's status with the journal's row count, and whether the schema was recorded at
   those heads; then the two watermarks once more;
3. :func:`k2_migrations.decisions.noop.noop_verdict` over those values.

Anything it is not sure of — an alembic.ini setting it does not model, a revision file it cannot read
as plain literals, a query that fails, a verdict of no — sends the run down the normal path, which
takes the lock and reads everything again under it. The client stays open meanwhile: on the embedded
engine the normal path's connection shares its engine instead of starting another. Cluster mode is
always the normal path. docs/safety.md ("The no-op fast path") says why an answer of "nothing to do"
given here is one the normal path would give.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2_migrations.decisions.digests import source_digest, sql_files_run
from k2_migrations.decisions.noop import (
    AttemptSummary,
    RevisionHeader,
    StateRead,
    Verdict,
    noop_verdict,
    read_header,
    script_heads,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from k2_migrations.commands.project import Settings
    from k2_migrations.config import Target
    from k2_migrations.engine.results import CheckResult, GuardResult, RevisionReport, RunResult

LOG = logging.getLogger("k2_migrations.sql")

#: Where the headers are cached, under the project's own directory beside alembic.ini.
CACHE_FILE = Path(".k2-migrate") / "script-heads.json"
#: Bumped whenever what is cached, or how a header is read, changes: an older cache is then ignored.
CACHE_FORMAT = 2
#: Alembic's file filter for revision scripts when ``sourceless`` is off (``_only_source_rev_file``).
_REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")
#: ``path_separator`` values, as Alembic's ``Config._get_file_separator_char`` maps them.
_SEPARATORS = {"space": " ", "newline": "\n", "os": os.pathsep, ":": ":", ";": ";"}
#: Alembic's legacy split of ``version_locations`` when no separator is configured.
_LEGACY_SPLIT = re.compile(r", *|(?: +)")


# -- the script's heads ------------------------------------------------------------------------------


def version_locations(config_file: Path) -> list[Path] | None:
    """The version directories Alembic would read for this alembic.ini; None for a setup not modelled.

    Modelled: ``version_locations`` in ``[alembic]``, split as Alembic splits it (``path_separator``,
    else the deprecated ``version_path_separator``, else on spaces and commas), each a file-system
    path. Not modelled, so left to Alembic: no ``version_locations`` (the script location's
    ``versions``), a package resource (``pkg:path``), ``sourceless`` or ``recursive_version_locations``,
    and a location inside the installed k2_migrations package (the normal path refuses it).
    """
    here = config_file.absolute().parent
    parser = configparser.ConfigParser({"here": here.as_posix()})
    try:
        if not parser.read(config_file, encoding="utf-8") or not parser.has_section("alembic"):
            return None
        section = parser["alembic"]
        if section.get("sourceless") == "true" or section.get("recursive_version_locations") == "true":
            return None
        raw = section.get("version_locations")
        separator = section.get("path_separator", section.get("version_path_separator"))
    except (configparser.Error, UnicodeDecodeError, OSError):
        return None
    if not raw:
        return None
    if separator is None:
        names = _LEGACY_SPLIT.split(raw)
    elif separator in _SEPARATORS:
        names = [name.strip() for name in raw.split(_SEPARATORS[separator]) if name]
    else:
        return None
    package = Path(__file__).resolve().parents[1]
    locations = []
    for name in names:
        if not name or (":" in name and not os.path.isabs(name)):
            return None
        location = Path(name).absolute()
        if location.resolve().is_relative_to(package):
            return None
        locations.append(location)
    return locations


def revision_files(locations: list[Path]) -> list[Path]:
    """The files Alembic loads from ``locations``: each existing directory's top level, sorted, every
    name its filter takes, a file reached twice (resolved) once. A name it would load that is not a
    readable file (a broken link: Alembic stops on it) raises OSError: the normal path says so."""
    files: list[Path] = []
    seen: set[Path] = set()
    for location in locations:
        if not location.is_dir():
            continue
        for name in sorted(os.listdir(location)):
            path = location / name
            if not _REVISION_FILE.match(name) or path.is_dir():
                continue  # Alembic walks only files: a directory is not one of them
            if not path.is_file():
                raise OSError(f"{path} is not a file")
            real = path.resolve()
            if real not in seen:
                seen.add(real)
                files.append(real)
    return files


def _stamp(path: Path) -> list[int]:
    """What tells a changed file: inode, size, mtime and ctime in nanoseconds (a rename or an
    in-place rewrite moves ctime even where it keeps mtime and size)."""
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


@dataclass
class HeaderCache:
    """Headers by file, each with the stamp it was read at; read and written as one JSON file."""

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: bool = False

    @classmethod
    def load(cls, path: Path) -> HeaderCache:
        """The cache at ``path``; empty when missing, unreadable or of another format."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            entries = document["files"] if document.get("format") == CACHE_FORMAT else {}
            if not isinstance(entries, dict):
                entries = {}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            entries = {}
        return cls(path, entries)

    def header(self, file: Path) -> RevisionHeader | None:
        """``file``'s header, from the cache when its stamp is unchanged, else read and cached."""
        stamp = _stamp(file)
        entry = self.entries.get(str(file))
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            cached = _header_from(entry.get("header"))
            if cached is not None or entry.get("header") is None:
                return cached
        source = file.read_bytes().decode("utf-8")
        header = read_header(source)
        if stamp != _stamp(file):
            return None  # changed while it was read: not cached, and the normal path reads it
        self.entries[str(file)] = {
            "stamp": stamp,
            "header": asdict(header) if header else None,
            "sql_files": list(sql_files_run(source)),
        }
        self.changed = True
        return header

    def digest(self, file: Path) -> str:
        """``file``'s source digest (:mod:`k2_migrations.decisions.digests`): its bytes and those of
        the SQL files it runs, read now; which files it runs is cached with its header (parsing it
        again costs about 0.5 ms a revision, hashing the files a few µs)."""
        stamp = _stamp(file)
        source = file.read_bytes()
        entry = self.entries.get(str(file))
        names = entry.get("sql_files") if isinstance(entry, dict) and entry.get("stamp") == stamp else None
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)) or stamp != _stamp(file):
            names = list(sql_files_run(source.decode("utf-8", errors="replace")))
        sql: dict[str, bytes | None] = {}
        for name in names:
            try:
                sql[name] = (file.parent / name).read_bytes()
            except OSError:
                sql[name] = None
        return source_digest(source, sql)

    def save(self, files: list[Path]) -> None:
        """Write the entries of ``files`` (others are dropped) to a temporary file renamed over the
        cache; a directory that cannot be written to only means no cache."""
        keep = {str(f): self.entries[str(f)] for f in files if str(f) in self.entries}
        if not self.changed and keep == self.entries:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".script-heads.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"format": CACHE_FORMAT, "files": keep}, out)
            os.replace(temporary, self.path)
        except OSError:
            return


def _header_from(value: Any) -> RevisionHeader | None:
    try:
        return RevisionHeader(
            revision=str(value["revision"]),
            down_revisions=tuple(str(v) for v in value["down_revisions"]),
            branch_labels=tuple(str(v) for v in value["branch_labels"]),
            depends_on=tuple(str(v) for v in value["depends_on"]),
            doc=str(value["doc"]),
        )
    except (KeyError, TypeError):
        return None


def read_script(
    config_file: Path,
) -> tuple[tuple[str, ...] | None, dict[str, RevisionHeader], dict[str, Path]]:
    """The script's heads as Alembic computes them (None: leave it to Alembic), the headers by id and
    each revision's file."""
    locations = version_locations(config_file)
    if locations is None:
        return None, {}, {}
    cache = HeaderCache.load(config_file.absolute().parent / CACHE_FILE)
    try:
        files = revision_files(locations)
        headers = [cache.header(f) for f in files]
    except (OSError, UnicodeDecodeError):
        return None, {}, {}
    cache.save(files)
    readable = [(h, f) for h, f in zip(headers, files, strict=True) if h is not None]
    if len(readable) != len(headers):
        return None, {}, {}
    return (
        script_heads(h for h, _ in readable),
        {h.revision: h for h, _ in readable},
        {h.revision: f for h, f in readable},
    )


# -- the unlocked read -----------------------------------------------------------------------------


def _state_query(database: str) -> str:
    """The one query: tables, the record's heads and newest seq, journal attempts and row count,
    and whether the schema is recorded at the heads the script wants (``{key:String}``)."""
    record = f"`{database}`.k2_migrations_versions"
    journal = f"`{database}`.k2_migrations_journal"
    snapshots = f"`{database}`.k2_migrations_snapshots"
    return f"""
SELECT
  (SELECT groupArray((name, engine)) FROM system.tables WHERE database = {{d:String}}),
  (SELECT (groupArrayIf(revision, applied = 1), max(last_seq))
     FROM (SELECT revision, argMax(applied, seq) AS applied, max(seq) AS last_seq
             FROM {record} GROUP BY revision)),
  (SELECT (sum(n), arraySort(a -> a.5, groupArrayIf((attempt_id, revision, direction, status, first),
                                                    attempt_id != '')))
     FROM (SELECT attempt_id, count() AS n, argMin(revision, key) AS revision,
                  argMin(direction, key) AS direction, min(key) AS first,
                  if(countIf(kind = 'revision') > 0, argMaxIf(status, key, kind = 'revision'),
                     argMin(status, key)) AS status
             FROM (SELECT attempt_id, revision, direction, kind, status, (at, run_id, seq) AS key
                     FROM {journal})
            GROUP BY attempt_id)),
  (SELECT count() FROM {snapshots} WHERE object = '__schema__' AND revision = {{key:String}})
"""


def _watermark_query(database: str) -> str:
    return (
        f"SELECT (SELECT max(seq) FROM `{database}`.k2_migrations_versions),"
        f" (SELECT count() FROM `{database}`.k2_migrations_journal)"
    )


def _query(client: Client, sql: str, parameters: dict[str, str]) -> list[Any]:
    started = time.monotonic()
    rows = client.query(sql, parameters=parameters).result_rows
    LOG.info("%s  -- %.3f s", " ".join(sql.split())[:157] + "...", time.monotonic() - started)
    return list(rows[0])


def _query_rows(client: Client, sql: str) -> list[Any]:
    started = time.monotonic()
    rows = client.query(sql).result_rows
    LOG.info("%s  -- %.3f s", " ".join(sql.split())[:157] + "...", time.monotonic() - started)
    return list(rows)


def read_state(client: Client, database: str, key: str) -> tuple[StateRead, tuple[int, int]]:
    """The one query's values, and the watermarks read again after it (see :func:`noop_verdict`)."""
    tables, (heads, record_seq), (journal_rows, attempts), schema = _query(
        client, _state_query(database), {"d": database, "key": key}
    )
    state = StateRead(
        tables={str(name): str(engine) for name, engine in tables},
        heads=tuple(sorted(str(h) for h in heads)),
        record_seq=int(record_seq),
        journal_rows=int(journal_rows),
        attempts=tuple(AttemptSummary(str(a[0]), str(a[1]), str(a[2]), str(a[3])) for a in attempts),
        schema_recorded=int(schema) > 0,
    )
    seq_again, rows_again = _query(client, _watermark_query(database), {})
    return state, (int(seq_again), int(rows_again))


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class _NoRecords:
    """A run that ran nothing: the records :func:`~k2_migrations.output.report.run_text` reads."""

    revisions: list[RevisionReport] = field(default_factory=list)
    guard_results: list[GuardResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    intervals: dict[tuple[str, str], float] = field(default_factory=dict)


def target_of(settings: Settings) -> Target:
    """The target as :meth:`Project.target` resolves it, without loading the project."""
    from k2_migrations.config import default_target, parse_url

    if not settings.url:
        return default_target(settings.config_file.resolve().parent, settings.environ)
    return parse_url(settings.url, settings.environ)


@contextmanager
def probe(settings: Settings, target: str) -> Iterator[RunResult | None]:
    """Yield the result of a no-op ``upgrade target`` when the fast path can tell there is nothing to
    do, else None; the client it read with stays open until the block ends (the normal path, run
    inside it, then shares an embedded engine rather than starting another)."""
    from k2_migrations.backends import open_client
    from k2_migrations.config import check_identifier, mask_secrets
    from k2_migrations.errors import K2MigrateError

    started = time.perf_counter()
    if settings.cluster or target not in {"head", "heads"} or not settings.config_file.is_file():
        yield None
        return
    wanted, headers, files = read_script(settings.config_file)
    if wanted is None:
        LOG.info("fast path: the revision files need Alembic to read them")
        yield None
        return
    database = check_identifier(settings.migrations_database, "migrations database")
    where = target_of(settings)
    try:
        handle = open_client(
            where, wait_s=settings.lock_timeout, command=settings.command, verbose=settings.verbose
        )
    except K2MigrateError:
        raise  # the embedded path held or unusable: the normal path would say the same
    except Exception as exc:  # a server's driver error: the normal path words it
        LOG.info("fast path: %s", mask_secrets(" ".join(str(exc).split()))[:200])
        yield None
        return
    cache = HeaderCache.load(settings.config_file.absolute().parent / CACHE_FILE)
    try:
        noop = _decide(handle.client, database, target, wanted, where, started)
        yield (
            None
            if noop is None or _edited(handle.client, database, noop.heads_after, headers, files, cache)
            else noop
        )
    finally:
        handle.close()


@dataclass(frozen=True)
class CurrentRead:
    """What ``current`` shows, from the fast path's read: nothing is in progress when it is made."""

    url: str
    heads: tuple[str, ...]
    script_heads: tuple[str, ...]
    docs: dict[str, str]


def read_current(settings: Settings) -> CurrentRead | None:
    """``current``'s answer from the same read as the no-op fast path; None (Alembic's read then)
    unless the revision files and the migrations database are as :func:`probe` requires them, and
    no attempt is in progress (the normal path words that)."""
    from k2_migrations.backends import open_client
    from k2_migrations.config import check_identifier
    from k2_migrations.decisions.noop import CLOSED_STATUSES, layout_difference
    from k2_migrations.errors import K2MigrateError

    if settings.cluster or not settings.config_file.is_file():
        return None
    wanted, headers, _ = read_script(settings.config_file)
    if wanted is None:
        return None
    database = check_identifier(settings.migrations_database, "migrations database")
    where = target_of(settings)
    try:
        handle = open_client(
            where, wait_s=settings.lock_timeout, command=settings.command, verbose=settings.verbose
        )
    except K2MigrateError:
        raise  # the embedded path held or unusable: Alembic's read would say the same
    except Exception:  # a server's driver error: the normal path words it
        return None
    try:
        state, again = read_state(handle.client, database, ",".join(wanted))
    except Exception:  # a missing database or table, a previous release's layout: Alembic's read
        return None
    finally:
        handle.close()
    if (
        layout_difference(state.tables) is not None
        or any(a.status not in CLOSED_STATUSES for a in state.attempts)
        or again != (state.record_seq, state.journal_rows)
    ):
        return None
    docs = {h: headers[h].doc for h in state.heads if h in headers}
    LOG.info("fast path: current: %s", ", ".join(state.heads) or "base")
    return CurrentRead(where.display(), state.heads, wanted, docs)


def _edited(
    client: Client,
    database: str,
    heads: tuple[str, ...],
    headers: dict[str, RevisionHeader],
    files: dict[str, Path],
    cache: HeaderCache,
) -> bool:
    """Whether an applied revision was edited since its digest was recorded (the normal path then
    names it), or the recorded digests cannot be read (a record without the column: the normal path
    adds it). Reads every revision file and the SQL files each runs (:meth:`HeaderCache.digest`)."""
    from k2_migrations.decisions.digests import edited_revisions

    try:
        rows = _query_rows(
            client,
            f"SELECT revision, argMaxIf(digest, seq, digest != '') AS d FROM `{database}`.k2_migrations_versions"
            " GROUP BY revision HAVING d != ''",
        )
        current = {revision: cache.digest(file) for revision, file in files.items()}
    except Exception as exc:  # any failure here only means: take the normal path
        LOG.info("fast path: digests: %s", " ".join(str(exc).split())[:200])
        return True
    recorded = {str(revision): str(digest) for revision, digest in rows}
    parents = {revision: header.down_revisions for revision, header in headers.items()}
    found = edited_revisions(recorded, current, heads, parents)
    if found:
        LOG.info("fast path: edited after applied: %s", ", ".join(found))
    return bool(found)


def _decide(
    client: Client, database: str, target: str, wanted: tuple[str, ...], where: Target, started: float
) -> RunResult | None:
    from k2_migrations.config import mask_secrets
    from k2_migrations.engine.results import RunResult

    try:
        state, again = read_state(client, database, ",".join(wanted) or "base")
    except Exception as exc:  # a missing database or table, a previous release's layout: Alembic's job
        LOG.info("fast path: %s", mask_secrets(" ".join(str(exc).split()))[:200])
        return None
    verdict: Verdict = noop_verdict(target, wanted, state, again)
    LOG.info("fast path: %s", verdict.reason)
    if not verdict.noop:
        return None
    return RunResult(
        command="up",
        target=target,
        url=where.display(),
        heads_before=state.heads,
        heads_after=state.heads,
        runtime=_NoRecords(),
        elapsed_s=time.perf_counter() - started,
    )
