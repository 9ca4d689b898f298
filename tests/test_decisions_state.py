"""Property tests of the pure decisions over the migrations tables' rows: heads, attempts, the lock.

Each decision is a function of the rows the engine returned; these tests state its contract over
arbitrary rows (any order, any clocks, any hosts). The I/O around them is tested end to end through
the CLI (tests/test_survivors.py, tests/test_version_state.py, tests/test_kill_points.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.decisions.attempts import (
    Attempt,
    JournalRow,
    StepRecord,
    attempts,
    done_step,
    in_order,
    in_progress,
)
from k2_migrations.decisions.heads import VersionRow, applied_heads, heads_change
from k2_migrations.decisions.lock import holder_dead

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REVISIONS = st.sampled_from(["a", "b", "c", "d"])
#: A clock anywhere within a day of the true time: a slow or a fast host.
SKEW = st.integers(min_value=-86_400_000, max_value=86_400_000).map(lambda ms: timedelta(milliseconds=ms))


# -- heads -----------------------------------------------------------------------------------------


@st.composite
def version_record(draw: st.DrawFn) -> list[VersionRow]:
    """A record of changes as k2-migrate writes it: change n is seq n, each revision at most once in
    it, each written with the writing host's clock (skewed at will)."""
    rows: list[VersionRow] = []
    for seq in range(1, draw(st.integers(0, 8)) + 1):
        change = draw(st.dictionaries(REVISIONS, st.booleans(), min_size=1))
        at = T0 + timedelta(minutes=seq) + draw(SKEW)
        rows.extend(VersionRow(seq, revision, applied, at) for revision, applied in change.items())
    return rows


def heads_by_replay(rows: list[VersionRow]) -> tuple[str, ...]:
    """The model: replay the changes in seq order."""
    applied: dict[str, bool] = {}
    for row in sorted(rows, key=lambda r: r.seq):
        applied[row.revision] = row.applied
    return tuple(sorted(r for r, on in applied.items() if on))


@given(version_record(), st.randoms())
def test_heads_are_decided_by_seq_whatever_the_order_and_the_clocks(rows: list[VersionRow], rnd: Any) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert applied_heads(shuffled) == heads_by_replay(rows)


def test_a_later_change_written_by_a_slow_clock_wins() -> None:
    fast = T0 + timedelta(hours=1)
    rows = [
        VersionRow(1, "a", True, fast),
        VersionRow(2, "a", False, T0),  # the next change, by a host whose clock is an hour behind
        VersionRow(2, "b", True, T0),
    ]
    assert applied_heads(rows) == ("b",)
    assert applied_heads(reversed(rows)) == ("b",)


def test_no_rows_is_base_and_heads_are_sorted() -> None:
    assert applied_heads([]) == ()
    assert applied_heads([VersionRow(1, "b", True, T0), VersionRow(1, "a", True, T0)]) == ("a", "b")


@given(st.sets(REVISIONS), st.sets(REVISIONS))
def test_a_heads_change_leads_from_before_to_after(before: set[str], after: set[str]) -> None:
    change = heads_change(before, after)
    rows = [VersionRow(1, r, True, T0) for r in before]
    rows += [VersionRow(2, r, on, T0 - timedelta(hours=1)) for r, on in change.items()]
    assert set(applied_heads(rows)) == after
    assert set(change) == before ^ after  # heads that stay are not written again
    assert all(applied is (revision in after) for revision, applied in change.items())


# -- attempts ------------------------------------------------------------------------------------


def row(run: str, seq: int, kind: str, status: str, *, at: datetime = T0, **kw: Any) -> JournalRow:
    fields: dict[str, Any] = {
        "attempt_id": "x",
        "revision": "r1",
        "direction": "up",
        "step": 0,
        "operation": "",
        "payload": {},
    }
    fields.update(kw)
    return JournalRow(run_id=run, seq=seq, at=at, kind=kind, status=status, **fields)


def test_a_failed_revert_resumed_is_still_a_revert() -> None:
    rows = [
        row("run1", 1, "revision", "started", payload={"revert": True}, direction="down"),
        row("run1", 2, "step", "done", step=1, direction="down"),
        row("run1", 3, "revision", "failed", direction="down"),
    ]
    (attempt,) = attempts(rows)
    assert attempt.revert and attempt.in_progress and attempt.direction == "down"
    resumed = [
        *rows,
        row("run2", 1, "revision", "started", at=T0 + timedelta(minutes=1), payload={"revert": True}),
    ]
    resumed.append(row("run2", 2, "revision", "failed", at=T0 + timedelta(minutes=1)))
    (attempt,) = attempts(resumed)
    assert attempt.revert and attempt.status == "failed"


def test_an_attempt_that_never_said_revert_is_none() -> None:
    (attempt,) = attempts([row("r", 1, "revision", "started", payload={"revert": False})])
    assert not attempt.revert


@given(
    st.lists(st.sampled_from(["started", "failed", "migrated", "done", "reverted", "abandoned"]), min_size=1)
)
def test_an_attempt_is_in_progress_exactly_when_its_newest_revision_row_is_open(statuses: list[str]) -> None:
    rows = [row("r", i, "revision", status) for i, status in enumerate(statuses)]
    (attempt,) = attempts(rows)
    assert attempt.status == statuses[-1]
    assert attempt.in_progress == (statuses[-1] in {"started", "failed", "migrated"})
    assert (in_progress([attempt]) is attempt) == attempt.in_progress


@given(st.lists(SKEW, min_size=2, max_size=6))
def test_a_runs_rows_keep_their_order_when_its_clock_steps_back(skews: list[timedelta]) -> None:
    """Within one run the journal's own seq orders the rows; a run's rows come after the earlier run's."""
    first = [  # run ids are random: this run's sorts after the later one's
        row("z", 1, "revision", "started", at=T0 - timedelta(days=2)),
        row("z", 2, "revision", "failed", at=T0 - timedelta(days=2)),
    ]
    statuses = ["started"] + ["failed"] * (len(skews) - 2) + ["done"]
    later = [
        row("b", i + 1, "revision", status, at=T0 + skew)
        for i, (status, skew) in enumerate(zip(statuses, skews, strict=True))
    ]
    ordered = in_order(list(reversed(first + later)))
    assert ordered == first + later
    (attempt,) = attempts(first + later)
    assert attempt.status == "done" and not attempt.in_progress


def test_a_run_is_placed_by_its_first_row_even_when_its_clock_jumped_forward() -> None:
    a = [
        row("a", 1, "revision", "started", at=T0),
        row("a", 2, "revision", "failed", at=T0 + timedelta(days=10)),
    ]
    b = [row("b", 1, "revision", "done", at=T0 + timedelta(days=1))]
    assert in_order(a + b) == a + b
    assert in_order(b + a[::-1]) == a + b


def test_the_newest_open_attempt_is_the_one_in_progress() -> None:
    rows = [  # run ids are random: time orders the runs, never their ids
        row("r3", 1, "revision", "failed", attempt_id="old"),
        row("r2", 1, "revision", "done", attempt_id="done", at=T0 + timedelta(minutes=1)),
        row("r1", 1, "revision", "started", attempt_id="new", at=T0 + timedelta(minutes=2)),
    ]
    found = attempts(rows)
    assert [a.attempt_id for a in found] == ["old", "done", "new"]
    current = in_progress(found)
    assert current is not None and current.attempt_id == "new"
    assert in_progress([a for a in found if a.attempt_id == "done"]) is None


def test_a_step_is_done_only_when_its_newest_row_says_so() -> None:
    rows = [
        row("r", 1, "revision", "started"),
        row("r", 2, "step", "started", step=1, operation="create x"),
        row("r", 3, "step", "done", step=1, operation="create x", payload={"n": 1}),
        row("r", 4, "step", "started", step=2, operation="move y"),
        row("r", 5, "step", "failed", step=2, operation="move y"),
    ]
    (attempt,) = attempts(rows)
    assert done_step(attempt, 1) == StepRecord(1, "create x", "done", {"n": 1})
    assert done_step(attempt, 2) is None
    assert done_step(attempt, 3) is None
    assert done_step(None, 1) is None
    assert attempt.started_at == T0 and attempt.revision == "r1"


def test_an_attempt_whose_revision_row_is_missing_is_in_progress_by_its_steps() -> None:
    """A step row alone (the rows before it lost) still says work began: in progress, never done."""
    (attempt,) = attempts([row("r", 7, "step", "started", step=3)])
    assert attempt.status == "started" and attempt.in_progress


def test_an_attempt_keeps_its_first_rows_revision_and_direction() -> None:
    found = attempts([row("r", 1, "revision", "started", direction="down", revision="r9")])
    assert found == [Attempt("x", "r9", "down", "started", T0)]


# -- the lock ------------------------------------------------------------------------------------


def never_asked(pid: int) -> bool:
    raise AssertionError(f"pid {pid} of another host was checked on this one")


@given(
    age=st.floats(0, 1000, allow_nan=False),
    expiry=st.floats(1, 1000, allow_nan=False),
    pid=st.integers(0, 2**22),
    host=st.sampled_from(["other-host", "db-2.example", ""]),
)
def test_a_holder_on_another_host_is_judged_by_its_heartbeat_only(
    age: float, expiry: float, pid: int, host: str
) -> None:
    dead = holder_dead(
        heartbeat_age_s=age,
        expiry_s=expiry,
        holder_host=host,
        holder_pid=pid,
        this_host="this-host",
        pid_alive=never_asked,
    )
    assert dead == (age > expiry)


@given(age=st.floats(0, 59.9), alive=st.booleans(), pid=st.integers(1, 2**22))
def test_a_holder_on_this_host_is_dead_when_its_pid_is(age: float, alive: bool, pid: int) -> None:
    asked: list[int] = []

    def pid_alive(p: int) -> bool:
        asked.append(p)
        return alive

    dead = holder_dead(
        heartbeat_age_s=age, expiry_s=60, holder_host="h", holder_pid=pid, this_host="h", pid_alive=pid_alive
    )
    assert dead == (not alive) and asked == [pid]


def test_the_lock_edges() -> None:
    def judge(age: float, pid: int = 7, *, embedded: bool = False) -> bool:
        return holder_dead(
            heartbeat_age_s=age,
            expiry_s=60,
            holder_host="h",
            holder_pid=pid,
            this_host="h",
            pid_alive=lambda p: True,
            embedded_table=embedded,
        )

    assert not judge(60.0)  # exactly at expiry: still alive
    assert judge(60.001)
    assert judge(0.0, embedded=True)
    # A holder row without a pid (being acquired) is never judged by a pid.
    assert not holder_dead(
        heartbeat_age_s=1, expiry_s=60, holder_host="h", holder_pid=0, this_host="h", pid_alive=never_asked
    )
