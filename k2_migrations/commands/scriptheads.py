"""The script's heads read from the revision files without Alembic, for the no-op fast path.

Each file's header (``revision``, ``down_revision``, ``branch_labels``, ``depends_on``) is read with
:mod:`ast` (:func:`k2_migrations.decisions.noop.read_header`), never importing the file, and cached in
``.k2-migrate/script-heads.json`` beside alembic.ini by its stamp (path, inode, size, mtime and ctime
in ns), written atomically, ignored when unreadable. A setup or a file this module cannot read as
Alembic would answers None: the caller then leaves the revisions to Alembic.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from k2_migrations.decisions.digests import source_digest, sql_files_run
from k2_migrations.decisions.noop import RevisionHeader, read_header, script_heads

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
