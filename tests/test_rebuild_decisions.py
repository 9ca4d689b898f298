"""Which staged partitions a rebuild still attaches, property-tested: from the counts a run reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.decisions.rebuild import copy_units, unattached


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
