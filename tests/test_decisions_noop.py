"""Unit tests of the no-op fast path's pure pieces at their edges (tests/test_fast_path.py has the
properties against Alembic and the real runs): what a header may hold and still be read, which
graphs are left to Alembic, and the reason each refusal gives (shown by ``-v``).
"""

from __future__ import annotations

import pytest

from k2_migrations.decisions.noop import (
    EXPECTED_ENGINES,
    AttemptSummary,
    RevisionHeader,
    StateRead,
    noop_verdict,
    read_header,
    script_heads,
)

HEADER = (
    "revision = 'a1'\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n\n\n"
    "def upgrade() -> None:\n{body}\n\n\ndef downgrade() -> None:\n    pass\n"
)


def source(body: str = "    pass", *, doc: str | None = '"""revision a1"""', top: str = "") -> str:
    head = f"{doc}\n" if doc is not None else ""
    return head + top + HEADER.format(body=body)


# -- read_header ---------------------------------------------------------------------------------


def test_a_header_right_below_the_docstring_or_without_one_is_read() -> None:
    assert read_header(source()) == RevisionHeader("a1", (), (), (), "revision a1")
    assert read_header(source(doc=None)) == RevisionHeader("a1", (), (), (), "")
    assert read_header("") is None


def test_the_doc_is_the_docstring_as_written_up_to_its_first_blank_line() -> None:
    """Alembic's ``Script.doc``: the module's ``__doc__`` (not dedented), up to its first blank line."""
    header = read_header(source(doc='"""first\n    second\n\nthird"""'))
    assert header is not None and header.doc == "first\n    second"


@pytest.mark.parametrize(
    "body",
    [
        "    rows = 1\n    op.execute(f'SELECT {rows}')",  # names and attributes of its own
        "    global counter\n    counter = 1",  # a global that is no header
    ],
)
def test_code_that_binds_no_header_leaves_it_readable(body: str) -> None:
    assert read_header(source(body)) == RevisionHeader("a1", (), (), (), "revision a1")


def test_a_header_set_through_sys_modules_needs_running_the_file() -> None:
    body = "    import sys\n    sys.modules[__name__].revision = 'a9'"
    assert read_header(source(body)) is None


# -- script_heads ----------------------------------------------------------------------------------


def header(revision: str, *down: str, labels: tuple[str, ...] = ()) -> RevisionHeader:
    return RevisionHeader(revision, down, labels, (), "")


def test_a_valid_graph_has_its_heads() -> None:
    assert script_heads([header("a"), header("b", "a"), header("c", "a")]) == ("b", "c")


@pytest.mark.parametrize(
    "graph",
    [
        [],
        [header("a"), header("a")],  # the same id twice
        [header("")],
        [header("a-1")],  # a character Alembic refuses in an id
        [header("a"), header("b", "a", "a")],  # a parent named twice
        [header("a", "a")],  # its own parent
        # A cycle, with a revision below it that reaches it from outside.
        [header("x", "y"), header("y", "x"), header("z", "x")],
    ],
)
def test_a_graph_alembic_would_refuse_or_warn_about_is_left_to_it(graph: list[RevisionHeader]) -> None:
    assert script_heads(graph) is None


# -- noop_verdict ---------------------------------------------------------------------------------


def state(**changes: object) -> StateRead:
    values: dict[str, object] = {
        "tables": dict(EXPECTED_ENGINES),
        "heads": ("a",),
        "record_seq": 3,
        "journal_rows": 5,
        "attempts": (AttemptSummary("t1", "a", "up", "done"),),
        "schema_recorded": True,
    }
    values.update(changes)
    return StateRead(**values)  # type: ignore[arg-type]


def test_each_reason_to_take_the_normal_path_is_named() -> None:
    cases = [
        (("+1", ("a",), state(), (3, 5)), "target '+1': only head and heads are decided here"),
        (("head", None, state(), (3, 5)), "the revision files need Alembic to read them"),
        (("head", ("a", "b"), state(), (3, 5)), "the revisions have 2 heads"),
        (
            (
                "head",
                ("a",),
                state(tables={**EXPECTED_ENGINES, "k2_migrations_journal": "MergeTree"}),
                (3, 5),
            ),
            "k2_migrations_journal is MergeTree, not Log",
        ),
        (
            ("head", ("a",), state(tables={"alembic_version": "View"}), (3, 5)),
            "k2_migrations_versions is missing, not MergeTree",
        ),
        (("heads", ("a", "b"), state(heads=("b", "a", "c")), (3, 5)), "applied a, b, c, wanted a, b"),
        (("head", ("a",), state(heads=()), (3, 5)), "applied base, wanted a"),
        (
            ("head", ("a",), state(attempts=(AttemptSummary("t2", "a", "up", "failed"),)), (3, 5)),
            "attempt t2 (a up) is failed",
        ),
        (
            ("head", ("a",), state(attempts=(AttemptSummary("t3", "a", "down", ""),)), (3, 5)),
            "attempt t3 (a down) is open",
        ),
        (("head", ("a",), state(schema_recorded=False), (3, 5)), "no schema record for these heads"),
        (("head", ("a",), state(), (4, 5)), "the version record or the journal changed while it was read"),
    ]
    for arguments, reason in cases:
        verdict = noop_verdict(*arguments)
        assert (verdict.noop, verdict.reason) == (False, reason), arguments
    verdict = noop_verdict("heads", ("a", "b"), state(heads=("b", "a")), (3, 5))
    assert (verdict.noop, verdict.reason) == (True, "at a, b, nothing in progress")
