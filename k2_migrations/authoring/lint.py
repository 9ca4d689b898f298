"""Static checks of revision files: the library behind ``k2-migrate lint [PATHS]``.

ClickHouse has no transactional DDL, so k2-migrations makes a run safe with idempotent operations,
row-count guards and a journal. A revision that goes around them — raw SQL that fails or doubles
rows when a crashed run is resumed, a drop nothing counted first, ``POPULATE``, ``DROP ... SYNC``, a
moved table whose views still point at the old name, a Kafka table re-created under a new consumer
group — fails only at run time, on production data, often half-applied. These checks find such
code in the source, so they run in review and CI before any database exists.

Revisions are parsed with :mod:`ast`, never imported or executed: linting must not run a
revision's module-level code or need its imports to resolve. What can be read is therefore limited
to string literals and f-strings (an f-string's ``{expressions}`` are unknown; its constant text is
read), names bound once to such strings (module constants, locals), and the calls made on
Alembic's ``op``. Whatever comes from a function call — such as the DDL of
:mod:`k2_migrations.k2.baseline_schema` — cannot be read and never produces a finding: a check that
guessed would cry wolf on correct revisions. Helper functions defined in the same file are followed
from ``upgrade()``/``downgrade()`` (a guard taken in ``upgrade()`` before calling a helper that drops
counts as taken before the drop); helpers imported from elsewhere are not.

Rules (ids as in :data:`RULES`):

``no-downgrade``
    no ``downgrade()``, or one that is only ``pass``/``...`` with no docstring saying why.
``not-idempotent``
    Alembic's ``op.execute`` with DDL/DML, or ``op.execute_sql`` without ``done_when=`` whose SQL
    fails or repeats itself on a re-run.
``drop-without-guard``
    ``op.drop_object(..., allow_rows=True)`` or a raw ``DROP TABLE`` with no ``op.take_guards`` before it.
``populate``
    ``POPULATE`` in SQL.
``drop-sync``
    ``DROP ... SYNC`` in SQL.
``rename-view-target``
    a table moved or renamed with no view re-created after it.
``kafka-group-changed``
    a Kafka table on a topic another Kafka table consumes under another ``kafka_group_name``.
``alter-kafka``
    ``ALTER TABLE`` on a Kafka table created in a linted file.
``syntax``
    the file is not valid Python (nothing else in it was checked).
``waiver-without-reason`` / ``waiver-unknown-rule``
    a waiver comment that waives nothing (see below).

Waivers
-------
A finding that is intended is waived by a comment on the offending line (any line of the offending
call or string) or on the line just above it::

    # k2-lint: allow drop-without-guard -- scratch table, rebuilt from bronze by the next revision
    op.drop_object("k2", "scratch_trades", allow_rows=True)

Several rules may share a waiver: ``# k2-lint: allow populate, drop-sync -- reason``. The reason
after `` -- `` is required, because a waiver is a decision a reviewer must be able to judge later: a
waiver without one waives nothing and is itself a finding (``waiver-without-reason``), as is a
waiver naming no rule that can be waived (``waiver-unknown-rule``, e.g. a misspelt id). Waived
findings are still returned, with :attr:`Finding.waived_reason` set, so the CLI can show them
without failing on them.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from k2_migrations.errors import UsageError

__all__ = ["RULES", "Finding", "lint_paths", "lint_source"]

RULES: dict[str, str] = {
    "no-downgrade": "no downgrade(), or one that does nothing without a docstring saying why",
    "not-idempotent": "raw SQL that fails or repeats itself when a resumed run executes it again",
    "drop-without-guard": "a drop that may lose rows (allow_rows=True, raw DROP TABLE) with no take_guards before it",
    "populate": "a materialized view created with POPULATE (loses the rows inserted while it is created)",
    "drop-sync": "DROP ... SYNC (hangs on the embedded engine; a plain DROP frees the name at once)",
    "rename-view-target": "a table moved or renamed with no view re-created after it (views do not follow a RENAME)",
    "kafka-group-changed": "a Kafka table on a topic already consumed under another kafka_group_name",
    "alter-kafka": "ALTER TABLE on a Kafka engine table (Kafka tables have no ALTER: drop and re-create)",
    "syntax": "the file is not valid Python, so nothing else in it was checked",
    "waiver-without-reason": "a k2-lint waiver with no reason after ' -- ': it waives nothing",
    "waiver-unknown-rule": "a k2-lint waiver naming no rule that can be waived",
}

#: Rules a waiver comment may name: not the ones about the file or the waivers themselves.
WAIVABLE: frozenset[str] = frozenset(RULES) - {"syntax", "waiver-without-reason", "waiver-unknown-rule"}

#: Stands for the part of an f-string (or concatenation) whose value is not known statically.
PLACEHOLDER = "{…}"


@dataclass(frozen=True)
class Finding:
    """One problem at one line of one file, with what to do about it.

    ``waived_reason`` is set when a ``# k2-lint: allow`` comment waives it: it is still reported
    (a waiver is a decision worth seeing) but must not fail the lint.
    """

    path: Path
    line: int
    rule: str
    message: str
    fix: str
    waived_reason: str | None = None

    @property
    def waived(self) -> bool:
        return self.waived_reason is not None

    def describe(self) -> str:
        """``path:line: RULE message — fix: ...`` on one line (plus the waiver's reason, if waived)."""
        text = f"{self.path}:{self.line}: {self.rule} {_one_line(self.message)} — fix: {_one_line(self.fix)}"
        if self.waived_reason is not None:
            text += f" (waived: {_one_line(self.waived_reason)})"
        return text


def lint_paths(paths: Sequence[Path]) -> list[Finding]:
    """Lint revision files and directories of them, as one set: the Kafka rules compare across files.

    A directory contributes its ``*.py`` files, not its subdirectories (Alembic's default
    ``version_locations`` layout) and not ``__init__.py`` (a package marker, not a revision). A file
    named explicitly is linted whatever its name. Findings come file by file in the order given
    (a directory's files sorted by name), each file's by line.

    Raises :class:`~k2_migrations.errors.UsageError` for a path that does not exist or cannot be
    read: that is a mistake in the command, not a finding about a revision.
    """
    analyses = [_analyse_file(path) for path in _revision_files(paths)]
    return _finish(analyses)


def lint_source(path: Path, source: str) -> list[Finding]:
    """Lint one revision's source text (``path`` is only used to name it in the findings).

    The Kafka rules compare this file's Kafka tables with one another only; use :func:`lint_paths`
    to compare revisions with each other.
    """
    return _finish([_analyse(path, source)])


# -- files ---------------------------------------------------------------------------------------


def _revision_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.py") if p.is_file() and p.name != "__init__.py")
        elif path.is_file():
            found = [path]
        else:
            raise UsageError(
                f"lint: {path} is neither a file nor a directory; name revision files or versions/"
            )
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files


def _analyse_file(path: Path) -> _FileAnalysis:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"lint: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        analysis = _FileAnalysis(path)
        line = data[: exc.start].count(b"\n") + 1
        analysis.hits.append(
            _Hit("syntax", line, line, "the file is not UTF-8 text", "save it as UTF-8 (Python's default)")
        )
        return analysis
    return _analyse(path, source)


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    """A finding before waivers: it remembers the lines of the offending code a waiver may sit on."""

    rule: str
    line: int
    last_line: int
    message: str
    fix: str


@dataclass(frozen=True)
class _Waiver:
    line: int
    rules: tuple[str, ...]
    reason: str | None


@dataclass(frozen=True)
class _KafkaTable:
    """A Kafka table DDL found in a string; names and settings are None where they cannot be known."""

    path: Path
    line: int
    last_line: int
    database: str | None
    name: str | None
    topics: tuple[str, ...]
    group: str | None


@dataclass(frozen=True)
class _TableRef:
    """A statement or operation that ALTERs ``database.name``."""

    line: int
    last_line: int
    database: str | None
    name: str
    how: str


@dataclass
class _FileAnalysis:
    path: Path
    hits: list[_Hit] = field(default_factory=list)
    waivers: list[_Waiver] = field(default_factory=list)
    kafka_tables: list[_KafkaTable] = field(default_factory=list)
    alters: list[_TableRef] = field(default_factory=list)


def _finish(analyses: list[_FileAnalysis]) -> list[Finding]:
    """Add the findings that compare files, apply the waivers, and order everything."""
    _check_kafka_groups(analyses)
    _check_kafka_alters(analyses)
    findings: list[Finding] = []
    for analysis in analyses:
        findings.extend(_apply_waivers(analysis))
    return findings


def _apply_waivers(analysis: _FileAnalysis) -> list[Finding]:
    by_line: dict[int, list[_Waiver]] = {}
    hits = list(analysis.hits)
    for waiver in analysis.waivers:
        by_line.setdefault(waiver.line, []).append(waiver)
        if waiver.rules and waiver.reason is None:
            hits.append(
                _Hit(
                    "waiver-without-reason",
                    waiver.line,
                    waiver.line,
                    f"the waiver of {', '.join(waiver.rules)} gives no reason, so it waives nothing",
                    "write why the rule does not apply after ' -- ': # k2-lint: allow RULE-ID -- reason",
                )
            )
        unknown = [rule for rule in waiver.rules if rule not in WAIVABLE]
        if unknown or not waiver.rules:
            message = (
                f"the waiver names {', '.join(unknown)}, not a rule that can be waived"
                if unknown
                else "this k2-lint comment is not a waiver the linter understands"
            )
            hits.append(
                _Hit(
                    "waiver-unknown-rule",
                    waiver.line,
                    waiver.line,
                    message,
                    f"write # k2-lint: allow RULE-ID -- reason, RULE-ID one of: {', '.join(sorted(WAIVABLE))}",
                )
            )
    findings: list[Finding] = []
    for hit in sorted(hits, key=lambda h: (h.line, h.rule, h.message)):
        reason: str | None = None
        if hit.rule in WAIVABLE:
            for line in range(hit.line - 1, hit.last_line + 1):
                for waiver in by_line.get(line, []):
                    if hit.rule in waiver.rules and waiver.reason is not None:
                        reason = waiver.reason
                        break
                if reason is not None:
                    break
        findings.append(Finding(analysis.path, hit.line, hit.rule, hit.message, hit.fix, reason))
    return findings


def _check_kafka_groups(analyses: list[_FileAnalysis]) -> None:
    """The first Kafka table seen on a topic sets its group; any other group on it is a finding."""
    established: dict[str, _KafkaTable] = {}
    for analysis in analyses:
        for table in analysis.kafka_tables:
            if table.group is None:
                continue
            for topic in table.topics:
                first = established.setdefault(topic, table)
                if first.group == table.group:
                    continue
                where = f"line {first.line}" if first.path == table.path else f"{first.path}:{first.line}"
                analysis.hits.append(
                    _Hit(
                        "kafka-group-changed",
                        table.line,
                        table.last_line,
                        f"Kafka table {_display(table.database, table.name)} consumes topic '{topic}' as "
                        f"group '{table.group}', but {where} consumes it as group '{first.group}': a new "
                        "group has no committed offsets, so it re-reads the topic from the start (or skips "
                        "to its end)",
                        f"keep kafka_group_name = '{first.group}' when re-creating a Kafka table on "
                        f"'{topic}': the offsets live under the group",
                    )
                )
                break


def _check_kafka_alters(analyses: list[_FileAnalysis]) -> None:
    kafka = [t for a in analyses for t in a.kafka_tables if t.name is not None]
    for analysis in analyses:
        for ref in analysis.alters:
            created = next((t for t in kafka if _same_table(t, ref)), None)
            if created is None:
                continue
            where = (
                f"line {created.line}" if created.path == analysis.path else f"{created.path}:{created.line}"
            )
            analysis.hits.append(
                _Hit(
                    "alter-kafka",
                    ref.line,
                    ref.last_line,
                    f"{ref.how} alters {_display(ref.database, ref.name)}, a Kafka table (created at "
                    f"{where}): Kafka engine tables support no ALTER",
                    "drop the views reading it and the Kafka table, re-create it with the new definition "
                    "and the same kafka_group_name, then re-create the views",
                )
            )


def _same_table(table: _KafkaTable, ref: _TableRef) -> bool:
    if table.name is None or table.name != ref.name or PLACEHOLDER in ref.name:
        return False
    known = [d for d in (table.database, ref.database) if d is not None and PLACEHOLDER not in d]
    return len(known) < 2 or known[0] == known[1]


def _display(database: str | None, name: str | None) -> str:
    shown = name or "?"
    return f"{database}.{shown}" if database else shown


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- one file ------------------------------------------------------------------------------------


def _analyse(path: Path, source: str) -> _FileAnalysis:
    analysis = _FileAnalysis(path)
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        line = exc.lineno or 1
        analysis.hits.append(
            _Hit(
                "syntax",
                line,
                line,
                f"does not parse: {exc.msg}",
                "fix the Python syntax; nothing else in this file was checked",
            )
        )
        return analysis
    except ValueError as exc:  # e.g. a NUL byte in the source
        analysis.hits.append(_Hit("syntax", 1, 1, f"does not parse: {exc}", "fix the file's content"))
        return analysis
    analysis.waivers.extend(_waivers(source))
    _Checker(analysis, tree).run()
    return analysis


_MENTION = re.compile(r"#\s*k2-lint\b", re.IGNORECASE)
_WAIVER = re.compile(r"#\s*k2-lint:\s*allow\b(?P<rules>[^#]*?)(?:--(?P<reason>.*))?$")


def _waivers(source: str) -> Iterator[_Waiver]:
    """Every ``# k2-lint: allow`` comment. Comments come from the tokenizer, so text in strings never counts."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return
    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        if not _MENTION.match(token.string):
            continue
        match = _WAIVER.match(token.string)
        if match is None:  # meant as a waiver but not one: say so rather than silently waive nothing
            yield _Waiver(token.start[0], (), None)
            continue
        rules = tuple(r for r in re.split(r"[\s,]+", match.group("rules").strip()) if r)
        reason = (match.group("reason") or "").strip() or None
        yield _Waiver(token.start[0], rules, reason)


Scope = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True)
class _Event:
    """Something in a scope whose order matters: a guard, a drop, a move, a view (re-)created, a call."""

    kind: str
    node: ast.AST
    detail: str = ""


class _Checker:
    """The checks on one parsed file."""

    def __init__(self, analysis: _FileAnalysis, tree: ast.Module) -> None:
        self.analysis = analysis
        self.tree = tree
        self.op_names = _op_names(tree)
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for node in tree.body:  # module-level functions win over same-named nested ones
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.functions[node.name] = node
        for node in defs:
            self.functions.setdefault(node.name, node)
        self.scopes: list[Scope] = [tree, *defs]
        self.bindings: dict[int, dict[str, ast.expr | None]] = {id(s): _bindings(s) for s in self.scopes}
        self.events: dict[int, list[_Event]] = {}
        self.reported: set[tuple[str, int, int]] = set()

    # -- driver

    def run(self) -> None:
        self._check_downgrade()
        for scope in self.scopes:
            events: list[_Event] = []
            for node in _scope_walk(scope):
                if isinstance(node, ast.Call):
                    self._check_call(node, scope, events)
            self.events[id(scope)] = events
        self._check_sequences()
        self._check_strings()

    # -- no-downgrade

    def _check_downgrade(self) -> None:
        body = self.tree.body
        upgrade = next((n for n in body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"), None)
        is_revision = upgrade is not None or any(
            isinstance(t, ast.Name) and t.id == "revision"
            for n in body
            if isinstance(n, ast.Assign | ast.AnnAssign)
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        )
        if not is_revision:
            return
        downgrades = [
            n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "downgrade"
        ]
        if not downgrades:
            line = upgrade.lineno if upgrade is not None else 1
            self._hit(
                "no-downgrade",
                line,
                line,
                "the revision has no downgrade(): k2-migrate downgrade cannot go below it",
                "add downgrade() undoing upgrade() in reverse order, or one whose docstring says why "
                "nothing needs undoing",
            )
            return
        downgrade = downgrades[-1]
        docstring = ast.get_docstring(downgrade)
        statements = downgrade.body[1:] if docstring is not None else downgrade.body
        does_nothing = all(
            isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and _is_constant(s.value, Ellipsis))
            for s in statements
        )
        if does_nothing and not (docstring and docstring.strip()):
            self._hit(
                "no-downgrade",
                downgrade.lineno,
                downgrade.end_lineno or downgrade.lineno,
                "downgrade() does nothing and does not say why",
                "undo upgrade() in reverse order, or give downgrade() a docstring saying why nothing "
                "needs undoing",
            )

    # -- calls

    def _check_call(self, call: ast.Call, scope: Scope, events: list[_Event]) -> None:
        method = self._op_method(call)
        if method is None:
            if isinstance(call.func, ast.Name) and call.func.id in self.functions:
                events.append(_Event("call", call, call.func.id))
            return
        if method == "take_guards":
            events.append(_Event("guard", call))
        elif method in ("restore_definition", "adopt_objects"):
            events.append(_Event("view", call))
        elif method == "create_object":
            ddl = self._text(_argument(call, 2, "ddl"), scope)
            if ddl is None or _opaque(ddl) or any(_creates_view(s) for s in _statements(ddl)):
                events.append(_Event("view", call))
        elif method == "drop_object":
            allow_rows = _keyword(call, "allow_rows")
            if allow_rows is not None and not _is_constant(allow_rows, False, None):
                name = self._object_name(call, scope, 0, 1)
                events.append(
                    _Event("drop", call, f"op.drop_object({name}, allow_rows=True) drops it with its rows")
                )
        elif method == "move_table":
            name = self._object_name(call, scope, 0, 1)
            to = self._text(_argument(call, 2, "to_database"), scope)
            destination = f" to {to}" if to and not _opaque(to) else ""
            events.append(_Event("move", call, f"op.move_table moves {name}{destination}"))
        elif method in ("execute", "execute_sql"):
            self._check_raw_sql(call, method, scope, events)
        elif method in ("add_column_if_missing", "drop_column_if_exists", "run_mutation"):
            table = self._text(_argument(call, 1, "table"), scope)
            if table is not None and not _opaque(table):
                database = self._text(_argument(call, 0, "database"), scope)
                self.analysis.alters.append(
                    _TableRef(call.lineno, call.end_lineno or call.lineno, database, table, f"op.{method}")
                )

    def _check_raw_sql(self, call: ast.Call, method: str, scope: Scope, events: list[_Event]) -> None:
        text = self._text(_argument(call, 0, "sqltext" if method == "execute" else "sql"), scope)
        if text is None:
            return
        statements = _statements(text)
        last = call.end_lineno or call.lineno
        if method == "execute":
            changing = [s for s in statements if _first_word(s) in _DDL_DML]
            if changing:
                self._hit(
                    "not-idempotent",
                    call.lineno,
                    last,
                    f"op.execute runs {_first_word(changing[0])} through Alembic: not a k2 step (not journaled, "
                    "not shown by plan) and never idempotent, so a resumed run repeats it",
                    _instead_of_execute(changing[0]),
                )
        elif _keyword(call, "done_when") is None or _is_constant(_keyword(call, "done_when"), None):
            for statement in statements:
                problem = _idempotency_problem(statement)
                if problem is not None:
                    self._hit("not-idempotent", call.lineno, last, problem[0], problem[1])
                    break
        for statement in statements:
            drop = _DROP_TABLE.match(statement.code)
            if drop:
                events.append(_Event("drop", call, f"DROP TABLE {drop.group(1)} drops it with its rows"))
            rename = _RENAME.match(statement.code)
            if rename:
                events.append(
                    _Event("move", call, f"RENAME {rename.group(1).upper()} {rename.group(2)} renames it")
                )
            if _creates_view(statement):
                events.append(_Event("view", call))

    # -- order within upgrade()/downgrade() (following same-file helpers)

    def _check_sequences(self) -> None:
        called = {
            id(self.functions[e.detail])
            for events in self.events.values()
            for e in events
            if e.kind == "call"
        }
        revision_functions = {
            id(n)
            for n in self.tree.body
            if isinstance(n, ast.FunctionDef) and n.name in ("upgrade", "downgrade")
        }
        for scope in self.scopes:
            # Entries: what Alembic (or module import) runs, and helpers nothing here calls.
            if id(scope) in called and id(scope) not in revision_functions:
                continue
            where = "module-level code" if isinstance(scope, ast.Module) else f"{scope.name}()"
            sequence = self._flatten(scope, frozenset({id(scope)}))
            for index, event in enumerate(sequence):
                node = event.node
                assert isinstance(node, ast.Call)
                if event.kind == "drop" and not any(e.kind == "guard" for e in sequence[:index]):
                    self._hit(
                        "drop-without-guard",
                        node.lineno,
                        node.end_lineno or node.lineno,
                        f"{event.detail}, and no op.take_guards comes before it in {where}",
                        "call op.take_guards(label, [tables]) before the drop and op.check_guards(label) "
                        "after: a guarded table dropped by op.drop_object(..., allow_rows=True) is reported "
                        "as dropped on purpose with the rows it had (not by a raw DROP TABLE: that is a "
                        "loss), any other change stops the run; or move the table instead of dropping it",
                        node,
                    )
                if event.kind == "move" and not any(e.kind == "view" for e in sequence[index + 1 :]):
                    self._hit(
                        "rename-view-target",
                        node.lineno,
                        node.end_lineno or node.lineno,
                        f"{event.detail}, but no view is re-created after it in {where}: a materialized "
                        "view's TO target and source do not follow a RENAME, so its views keep the old name",
                        "drop the views that read or write it before the move and re-create them "
                        "after it (op.restore_definition with rewrite=, or op.create_object with the view's DDL)",
                        node,
                    )

    def _flatten(self, scope: Scope, active: frozenset[int]) -> list[_Event]:
        out: list[_Event] = []
        for event in self.events.get(id(scope), []):
            if event.kind != "call":
                out.append(event)
                continue
            target = self.functions[event.detail]
            if id(target) not in active:  # recursion: the calls already on the way here
                out.extend(self._flatten(target, active | {id(target)}))
        return out

    # -- strings anywhere

    def _check_strings(self) -> None:
        for node in _string_nodes(self.tree):
            text = self._fold(node, None, 0)
            if text is None:
                continue
            first, last = node.lineno, node.end_lineno or node.lineno
            statements = _statements(text)
            if any(_POPULATE.search(s.code) and _looks_like_sql(s.code) for s in statements):
                self._hit(
                    "populate",
                    first,
                    last,
                    "POPULATE fills a materialized view from its source, but rows inserted while it runs are "
                    "lost (and a re-run fills it twice)",
                    "create the view without POPULATE, then backfill with INSERT INTO target SELECT ... "
                    "(op.execute_sql with done_when=)",
                )
            if any(_DROP_SYNC.search(s.code) for s in statements):
                self._hit(
                    "drop-sync",
                    first,
                    last,
                    "DROP ... SYNC hangs on the embedded engine (chDB)",
                    "remove SYNC: a plain DROP frees the name at once on an Atomic database",
                )
            for statement in statements:
                self._collect_kafka(statement, first, last)
                alter = _ALTER_TABLE.match(statement.code)
                if alter:
                    database, name = _split_name(alter.group(1))
                    self.analysis.alters.append(_TableRef(first, last, database, name, "ALTER TABLE"))

    def _collect_kafka(self, statement: _Statement, first: int, last: int) -> None:
        create = _CREATE_TABLE.match(statement.code)
        if create is None or not _KAFKA_ENGINE.search(statement.code):
            return
        database, name = _split_name(create.group(1))
        topics: str | None = None
        group: str | None = None
        positional = _KAFKA_ARGS.search(statement.text)
        if positional:
            topics, group = _unquote(positional.group("topics")), _unquote(positional.group("group"))
        topics = _kafka_setting(statement.text, "kafka_topic_list") or topics
        group = _kafka_setting(statement.text, "kafka_group_name") or group
        known_topics = tuple(
            t.strip() for t in (topics or "").split(",") if t.strip() and PLACEHOLDER not in t
        )
        known_group = group if group and PLACEHOLDER not in group else None
        self.analysis.kafka_tables.append(
            _KafkaTable(
                self.analysis.path,
                first,
                last,
                database,
                name if PLACEHOLDER not in name else None,
                known_topics,
                known_group,
            )
        )

    # -- helpers

    def _hit(
        self, rule: str, line: int, last_line: int, message: str, fix: str, node: ast.AST | None = None
    ) -> None:
        """Record a finding once per offending node and rule (a helper may be reached from two entries)."""
        key = (rule, line, getattr(node, "col_offset", -1) if node is not None else -1)
        if node is not None and key in self.reported:
            return
        self.reported.add(key)
        self.analysis.hits.append(_Hit(rule, line, last_line, message, fix))

    def _op_method(self, call: ast.Call) -> str | None:
        """``name`` for a call ``op.name(...)`` on Alembic's op (under whatever name it was imported)."""
        func = call.func
        if not isinstance(func, ast.Attribute):
            return None
        owner = func.value
        if isinstance(owner, ast.Name) and owner.id in self.op_names:
            return func.attr
        if (
            isinstance(owner, ast.Attribute)
            and owner.attr == "op"
            and isinstance(owner.value, ast.Name)
            and owner.value.id == "alembic"
        ):
            return func.attr
        return None

    def _object_name(self, call: ast.Call, scope: Scope, db_index: int, name_index: int) -> str:
        database = self._text(_argument(call, db_index, "database"), scope)
        name = self._text(_argument(call, name_index, "name"), scope)
        return _display(database if database and not _opaque(database) else None, name if name else "?")

    def _text(self, node: ast.expr | None, scope: Scope) -> str | None:
        return None if node is None else self._fold(node, scope, 0)

    def _fold(self, node: ast.expr, scope: Scope | None, depth: int) -> str | None:
        """The text of a string expression, unknown parts as PLACEHOLDER; None if it is not one.

        With a ``scope``, names bound once to a string are followed (an argument of an ``op`` call);
        without, only the literal text counts (a string seen where it is written).
        """
        if depth > 10:
            return None
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            parts: list[str] = []
            for value in node.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    parts.append(value.value)
                    continue
                inner = None
                if scope is not None and isinstance(value, ast.FormattedValue) and value.format_spec is None:
                    inner = self._fold(value.value, scope, depth + 1)
                parts.append(inner if inner is not None else PLACEHOLDER)
            return "".join(parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left = self._fold(node.left, scope, depth + 1)
            right = self._fold(node.right, scope, depth + 1)
            if left is None and right is None:
                return None
            return (PLACEHOLDER if left is None else left) + (PLACEHOLDER if right is None else right)
        if scope is None:
            return None
        if isinstance(node, ast.Name):
            bound = self._resolve(node.id, scope)
            return None if bound is None else self._fold(bound[0], bound[1], depth + 1)
        if isinstance(node, ast.Call) and not node.keywords:
            func = node.func
            callee = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if callee in ("text", "dedent") and len(node.args) == 1:  # sqlalchemy.text, textwrap.dedent
                return self._fold(node.args[0], scope, depth + 1)
            if callee in ("strip", "lstrip", "rstrip") and not node.args and isinstance(func, ast.Attribute):
                return self._fold(func.value, scope, depth + 1)
        return None

    def _resolve(self, name: str, scope: Scope) -> tuple[ast.expr, Scope] | None:
        for where in (scope, self.tree):
            bindings = self.bindings[id(where)]
            if name in bindings:
                value = bindings[name]
                return None if value is None else (value, where)
        return None


def _op_names(tree: ast.Module) -> set[str]:
    names = {"op"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "alembic":
            names.update(alias.asname or alias.name for alias in node.names if alias.name == "op")
    return names


def _scope_walk(scope: Scope) -> Iterator[ast.AST]:
    """The nodes of a scope in evaluation order (children first), not entering nested definitions."""
    for statement in scope.body:
        if not isinstance(statement, _NESTED):
            yield from _postorder(statement)


def _postorder(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, _NESTED):
            yield from _postorder(child)
    yield node


def _bindings(scope: Scope) -> dict[str, ast.expr | None]:
    """Each name bound in the scope: its value where it is bound exactly once by ``name = value``, else None."""
    counts: dict[str, int] = {}
    values: dict[str, ast.expr] = {}
    if not isinstance(scope, ast.Module):
        arguments = scope.args
        parameters = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        parameters += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        for parameter in parameters:
            counts[parameter.arg] = counts.get(parameter.arg, 0) + 1
    for statement in scope.body:
        if isinstance(statement, _NESTED):
            counts[statement.name] = counts.get(statement.name, 0) + 1
    for node in _scope_walk(scope):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            counts[node.id] = counts.get(node.id, 0) + 1
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                counts[bound] = counts.get(bound, 0) + 1
        elif (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            values[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = node.value
    return {name: values.get(name) if count == 1 else None for name, count in counts.items()}


def _string_nodes(tree: ast.Module) -> Iterator[ast.expr]:
    """Every maximal string expression, skipping documentation (a string that is a whole statement)."""

    def visit(node: ast.AST) -> Iterator[ast.expr]:
        if isinstance(node, ast.Expr) and _is_string(node.value):
            return
        if isinstance(node, ast.expr) and _is_string(node):
            yield node
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    return visit(tree)


def _is_string(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_string(node.left) or _is_string(node.right)
    return False


def _argument(call: ast.Call, index: int, name: str) -> ast.expr | None:
    found = _keyword(call, name)
    if found is not None:
        return found
    positional = [a for a in call.args if not isinstance(a, ast.Starred)]
    return positional[index] if index < len(positional) and len(positional) == len(call.args) else None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, *values: object) -> bool:
    return isinstance(node, ast.Constant) and any(node.value is v for v in values)


def _opaque(text: str) -> bool:
    """True when nothing of the text is known (e.g. ``f"{ddl}"``)."""
    return not text.replace(PLACEHOLDER, "").strip()


# -- SQL -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Statement:
    """One statement: ``text`` without comments; ``code`` also without the contents of '...' literals
    and with whitespace collapsed, so keywords are never matched inside a value or a comment."""

    text: str
    code: str


def _statements(sql: str) -> list[_Statement]:
    statements: list[_Statement] = []
    text: list[str] = []
    code: list[str] = []

    def flush() -> None:
        joined = " ".join("".join(code).split())
        if joined:
            statements.append(_Statement("".join(text).strip(), joined))
        text.clear()
        code.clear()

    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"`":
            end = _end_of_quoted(sql, i)
            text.append(sql[i:end])
            code.append("''" if char == "'" else sql[i:end])
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            code.append(" ")
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            code.append(" ")
        elif char == ";":
            flush()
            i += 1
        else:
            text.append(char)
            code.append(char)
            i += 1
    flush()
    return statements


def _end_of_quoted(sql: str, start: int) -> int:
    quote, i, n = sql[start], start + 1, len(sql)
    while i < n:
        if sql[i] == "\\" or (sql[i] == quote and sql[i + 1 : i + 2] == quote):  # escape, or '' inside
            i += 2
        elif sql[i] == quote:
            return i + 1
        else:
            i += 1
    return n


_I = re.IGNORECASE
_NAME = r"([^\s(,;]+)"
_DDL_DML = frozenset(
    {
        "CREATE",
        "ALTER",
        "DROP",
        "INSERT",
        "RENAME",
        "EXCHANGE",
        "TRUNCATE",
        "ATTACH",
        "DETACH",
        "DELETE",
        "UPDATE",
        "UNDROP",
    }
)
_SQL_START = re.compile(
    r"^\s*(?:CREATE|ALTER|DROP|INSERT|RENAME|EXCHANGE|TRUNCATE|ATTACH|DETACH|DELETE|UPDATE|SELECT|WITH|SYSTEM|OPTIMIZE)\b",
    _I,
)
_POPULATE = re.compile(r"\bPOPULATE\b", _I)
_DROP_SYNC = re.compile(r"\bDROP\s+(?:TEMPORARY\s+)?(?:TABLE|VIEW|DICTIONARY|DATABASE)\b[^;]*?\bSYNC\b", _I)
_DROP_TABLE = re.compile(rf"^DROP\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+EXISTS\s+)?{_NAME}", _I)
_RENAME = re.compile(rf"^RENAME\s+(TABLE|DATABASE)\s+(?:IF\s+EXISTS\s+)?{_NAME}", _I)
_CREATE_VIEW = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?(?:MATERIALIZED\s+|LIVE\s+|WINDOW\s+)?VIEW\b", _I)
_CREATE_TABLE = re.compile(rf"^CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}", _I)
_ALTER_TABLE = re.compile(rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?{_NAME}", _I)
_KAFKA_ENGINE = re.compile(r"\bENGINE\s*=\s*Kafka\b", _I)
_QUOTED = r"'(?:[^'\\]|\\.|'')*'"
_KAFKA_ARGS = re.compile(
    rf"\bENGINE\s*=\s*Kafka\s*\(\s*{_QUOTED}\s*,\s*(?P<topics>{_QUOTED})\s*,\s*(?P<group>{_QUOTED})", _I
)
_MUTATION = re.compile(r"(?:^ALTER\s+TABLE\s+\S+(?:\s+ON\s+CLUSTER\s+\S+)?|,)\s*(UPDATE|DELETE)\b", _I)
_ADD = re.compile(r"\bADD\s+(COLUMN|INDEX|PROJECTION|CONSTRAINT|STATISTICS?)\s+(?!IF\s+NOT\s+EXISTS\b)", _I)
_DROP_PART = re.compile(r"\bDROP\s+(COLUMN|INDEX|PROJECTION|CONSTRAINT|STATISTICS?)\s+(?!IF\s+EXISTS\b)", _I)
_RENAME_COLUMN = re.compile(r"\bRENAME\s+COLUMN\s+(?!IF\s+EXISTS\b)", _I)
_ATTACH_FROM = re.compile(r"\bATTACH\s+PARTITION\b.*\bFROM\b", _I)


def _first_word(statement: _Statement) -> str:
    match = re.match(r"\s*(\w+)", statement.code)
    return match.group(1).upper() if match else ""


def _creates_view(statement: _Statement) -> bool:
    return bool(_CREATE_VIEW.match(statement.code))


def _looks_like_sql(code: str) -> bool:
    """True for SQL rather than prose: keeps 'populate' in an error message from being a finding."""
    return bool(_SQL_START.match(code) or re.search(r"\bMATERIALIZED\s+VIEW\b|\bAS\s+SELECT\b", code, _I))


def _split_name(name: str) -> tuple[str | None, str]:
    name = name.replace("`", "").replace('"', "")
    database, dot, table = name.rpartition(".")
    return (database if dot else None), table


def _kafka_setting(text: str, key: str) -> str | None:
    """The value of a ``key = '...'`` setting; None if absent or not a plain literal."""
    match = re.search(rf"\b{key}\s*=\s*({_QUOTED})", text, _I)
    return _unquote(match.group(1)) if match else None


def _unquote(literal: str) -> str:
    return literal[1:-1].replace("''", "'").replace("\\'", "'")


def _idempotency_problem(statement: _Statement) -> tuple[str, str] | None:
    """(what goes wrong on a re-run, what to do) for a statement run by execute_sql without done_when."""
    code, word = statement.code, _first_word(statement)
    again = "when a resumed run executes it again"
    done_when = "give op.execute_sql done_when= (a query returning 1 once this has happened)"
    if word in ("CREATE", "ATTACH", "DROP", "DETACH"):
        needed = "IF NOT EXISTS" if word in ("CREATE", "ATTACH") else "IF EXISTS"
        clause = r"\bIF\s+NOT\s+EXISTS\b" if word in ("CREATE", "ATTACH") else r"\bIF\s+EXISTS\b"
        if re.match(rf"^\w+\s+[A-Z ]*?{clause}", code, _I):
            return None
        if word == "CREATE" and re.match(r"^CREATE\s+OR\s+REPLACE\b", code, _I):
            return None
        operation = _operation_for(statement)
        fix = f"add {needed}, or {done_when}" if operation is None else f"use {operation}, or add {needed}"
        return f"{word} without {needed} fails {again}", fix
    if word == "INSERT":
        return f"INSERT inserts its rows a second time {again}", done_when
    if word == "RENAME":
        operation = _operation_for(statement)
        fix = done_when if operation is None else f"use {operation}, or {done_when}"
        return f"RENAME fails {again} (the old name is gone)", fix
    if word == "EXCHANGE":
        return f"EXCHANGE swaps the tables back {again}", done_when
    if word != "ALTER":
        return None
    if _MUTATION.search(code):
        return (
            "ALTER ... UPDATE/DELETE is a mutation: a resumed run issues it again, and nothing waits for it",
            f"use {_RUN_MUTATION}: it waits with progress and never issues a mutation twice",
        )
    for pattern, needed in (
        (_ADD, "IF NOT EXISTS"),
        (_DROP_PART, "IF EXISTS"),
        (_RENAME_COLUMN, "IF EXISTS"),
    ):
        match = pattern.search(code)
        if match:
            clause = " ".join(match.group(0).split()).upper()
            operation = {
                "ADD COLUMN": "op.add_column_if_missing",
                "DROP COLUMN": "op.drop_column_if_exists",
            }.get(clause)
            fix = f"add {needed}" if operation is None else f"use {operation}, or add {needed}"
            return f"ALTER ... {clause} without {needed} fails {again}", fix
    if _ATTACH_FROM.search(code):
        return (
            f"ATTACH PARTITION ... FROM attaches the rows a second time {again}",
            f"use op.move_table to move a table, or {done_when}",
        )
    return None


_RUN_MUTATION = "op.run_mutation(database, table, command, done_when=...)"


def _instead_of_execute(statement: _Statement) -> str:
    operation = _operation_for(statement)
    if operation is not None:
        return f"use {operation}: an idempotent, journaled step"
    return (
        "use op.execute_sql(sql, done_when=...): a journaled step, skipped on a re-run once done_when "
        "(a query returning 1 once it has happened) says so"
    )


def _operation_for(statement: _Statement) -> str | None:
    """The idempotent operation that does what a raw statement does, if there is one."""
    code, word = statement.code, _first_word(statement)
    if re.match(r"^(?:CREATE|DROP)\s+DATABASE\b", code, _I):
        return "op.create_database" if word == "CREATE" else "op.drop_database"
    if word == "CREATE" and re.match(r"^CREATE\s+(?:OR\s+REPLACE\s+)?[A-Z ]*?\b(?:TABLE|VIEW)\b", code, _I):
        return "op.create_object"
    if word == "DROP" and re.match(r"^DROP\s+[A-Z ]*?\b(?:TABLE|VIEW|DICTIONARY)\b", code, _I):
        return "op.drop_object"
    if word == "RENAME" and re.match(r"^RENAME\s+TABLE\b", code, _I):
        return "op.move_table (to move a table to another database)"
    if word == "ALTER":
        if _MUTATION.search(code):
            return _RUN_MUTATION
        if re.search(r"\bADD\s+COLUMN\b", code, _I):
            return "op.add_column_if_missing"
        if re.search(r"\bDROP\s+COLUMN\b", code, _I):
            return "op.drop_column_if_exists"
    return None
