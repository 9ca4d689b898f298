"""Which staged partitions a rebuild still attaches, property-tested: from the counts a run reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.decisions.rebuild import copy_units, unattached, uncopied


@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 50)), max_size=30),
    st.integers(1, 120),
)
def test_copy_units_take_every_partition_once_in_order_and_each_closes_as_soon_as_it_holds_enough(
    parts: list[tuple[str, int]], unit_rows: int
) -> None:
    parts = sorted(parts)
    units = copy_units(parts, unit_rows)
    assert [p for unit in units for p in unit] == sorted({p for p, _ in parts})
    rows = {p: sum(n for q, n in parts if q == p) for p, _ in parts}
    for unit in units:
        assert sum(rows[p] for p in unit[:-1]) < unit_rows, unit
    for unit in units[:-1]:
        assert sum(rows[p] for p in unit) >= unit_rows, unit


counts = st.dictionaries(st.sampled_from(["202501", "202502", "202503", "all", "7"]), st.integers(0, 40))


@given(counts, counts, st.data())
def test_a_resumed_run_attaches_exactly_the_partitions_the_interrupted_one_did_not(
    before: dict[str, int], staged: dict[str, int], data: st.DataObject
) -> None:
    adds = {pid: rows + 1 for pid, rows in staged.items()}  # a staged partition holds rows
    done = data.draw(st.sets(st.sampled_from(sorted(adds))) if adds else st.just(set[str]()))
    now = {**before, **{pid: before.get(pid, 0) + adds[pid] for pid in done}}
    assert unattached(before, adds, now) == sorted(set(adds) - done)
    assert unattached(before, adds, None) == sorted(adds)  # staged by this run: nothing attached yet


@given(counts, counts, st.data())
def test_a_partition_holding_neither_count_is_refused_by_name(
    before: dict[str, int], staged: dict[str, int], data: st.DataObject
) -> None:
    if not staged:
        return
    adds = {pid: rows + 1 for pid, rows in staged.items()}
    odd = data.draw(st.sampled_from(sorted(adds)))
    wrong = data.draw(
        st.integers(0, 200).filter(lambda n: n not in (before.get(odd, 0), before.get(odd, 0) + adds[odd]))
    )
    now = {pid: before.get(pid, 0) for pid in adds} | {odd: wrong}
    was = before.get(odd, 0)
    message = f"^partition {odd} has {wrong} rows, {was} before this copy and {was + adds[odd]} after it$"
    with pytest.raises(ValueError, match=message):
        unattached(before, adds, now)


@given(counts, counts, st.data())
def test_a_straight_copy_resumed_keeps_whole_partitions_drops_part_written_ones_and_copies_the_rest(
    others: dict[str, int], unit: dict[str, int], data: st.DataObject
) -> None:
    expected = {f"u{pid}": rows + 1 for pid, rows in unit.items()}  # the unit's partitions, empty before
    before = {pid: rows for pid, rows in others.items() if rows}
    fill = data.draw(st.fixed_dictionaries({pid: st.integers(0, rows) for pid, rows in expected.items()}))
    now = {**before, **{pid: rows for pid, rows in fill.items() if rows}}
    drop, copy = uncopied(before, expected, now)
    assert drop == sorted(p for p, rows in fill.items() if 0 < rows < expected[p])
    assert copy == sorted(p for p, rows in fill.items() if rows < expected[p])
    assert uncopied(before, expected, before) == ([], sorted(expected))  # died before writing anything
    assert uncopied(before, expected, {**before, **expected}) == ([], [])  # the INSERT finished


@given(counts, counts, st.data())
def test_a_straight_copy_refuses_any_count_its_insert_cannot_leave(
    others: dict[str, int], unit: dict[str, int], data: st.DataObject
) -> None:
    expected = {f"u{pid}": rows + 1 for pid, rows in unit.items()}
    before = {pid: rows for pid, rows in others.items() if rows}
    done = {**before, **expected}
    wrong = data.draw(st.sampled_from(sorted(set(done) | {"elsewhere"})))
    extra = data.draw(st.integers(1, 5))
    was, copied = before.get(wrong, 0), expected.get(wrong)
    message = (
        f"partition {wrong} has {done.get(wrong, 0) + extra} rows, 0 before the copy and {copied} copied into it"
        if copied
        else f"partition {wrong}, not one copied into, has {was + extra} rows, {was} before the copy"
    )
    with pytest.raises(ValueError) as raised:
        uncopied(before, expected, {**done, wrong: done.get(wrong, 0) + extra})
    assert str(raised.value) == message
    if expected:  # a unit partition that held rows: the INSERT went to the stage, not straight
        held = data.draw(st.sampled_from(sorted(expected)))
        with pytest.raises(ValueError) as raised:
            uncopied({**before, held: 1}, expected, done)
        assert (
            str(raised.value)
            == f"partition {held} has {expected[held]} rows, 1 before the copy and {expected[held]} copied into it"
        )


@pytest.mark.parametrize(
    ("before", "now", "message"),
    [
        ({"a": 3}, {"u": 2}, "partition a, not one copied into, has 0 rows, 3 before the copy"),  # dropped
        ({"a": 1}, {"u": 2}, "partition a, not one copied into, has 0 rows, 1 before the copy"),
        ({}, {"u": 2, "b": 1}, "partition b, not one copied into, has 1 rows, 0 before the copy"),  # appeared
    ],
)
def test_a_partition_outside_the_unit_that_vanished_or_appeared_is_refused(
    before: dict[str, int], now: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        uncopied(before, {"u": 2}, now)
    assert str(raised.value) == message


@pytest.mark.parametrize(("before", "now"), [({"a": 0}, {"u": 2}), ({}, {"u": 2, "b": 0})])
def test_a_partition_counted_empty_is_the_same_as_one_not_listed(
    before: dict[str, int], now: dict[str, int]
) -> None:
    assert uncopied(before, {"u": 2}, now) == ([], [])
