"""Which staged partitions a rebuild still attaches, property-tested: from the counts a run reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.decisions.rebuild import unattached

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
