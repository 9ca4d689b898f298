"""The guard's verdict over parts, property-tested: inserts meanwhile pass, a lost baseline row fails."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.decisions.guards import Part, Verdict, carry, carry_copied, counted, judge, map_attached

PARTITIONS = ["0", "1", "202401"]


@st.composite
def tables(draw: st.DrawFn) -> list[Part]:
    """A table's active parts as inserts leave them: one block each, numbered table-wide. A part's
    digest stands for its content: parts of equal digest hold the same rows (a repeated insert)."""
    partitions = draw(st.lists(st.sampled_from(PARTITIONS), max_size=12))
    rows = draw(st.lists(st.integers(1, 50), min_size=len(partitions), max_size=len(partitions)))
    same = draw(st.lists(st.integers(0, 2), min_size=len(partitions), max_size=len(partitions)))
    return [
        Part(f"{p}_{b}_{b}_0", p, b, b, r, digest=f"{r}/{k}")
        for b, (p, r, k) in enumerate(zip(partitions, rows, same, strict=True), 1)
    ]


def inserted_after(parts: list[Part], new: list[tuple[str, int]]) -> list[Part]:
    top = max((p.max_block for p in parts), default=0)
    return [Part(f"{p}_{top + i}_{top + i}_0", p, top + i, top + i, r) for i, (p, r) in enumerate(new, 1)]


new_rows = st.lists(st.tuples(st.sampled_from(PARTITIONS), st.integers(1, 50)), max_size=8)


@given(tables(), new_rows)
def test_rows_inserted_after_the_baseline_are_inserts_and_nothing_is_lost(
    baseline: list[Part], new: list[tuple[str, int]]
) -> None:
    live = baseline + inserted_after(baseline, new)
    verdict = judge(baseline, live)
    assert verdict.ok
    assert (verdict.before, verdict.lost, verdict.inserted) == (
        sum(p.rows for p in baseline),
        0,
        sum(r for _, r in new),
    )
    assert verdict.after == verdict.kept + verdict.inserted and verdict.before == verdict.kept + verdict.lost


@given(tables(), new_rows, st.data())
def test_a_baseline_part_gone_is_lost_however_many_rows_were_inserted(
    baseline: list[Part], new: list[tuple[str, int]], data: st.DataObject
) -> None:
    if not baseline:
        return
    gone = data.draw(st.sampled_from(baseline))
    live = [p for p in baseline if p != gone] + inserted_after(baseline, new)
    verdict = judge(baseline, live)
    assert not verdict.ok and verdict.lost == gone.rows


@given(tables(), st.data())
def test_a_baseline_row_deleted_by_a_mutation_is_lost(baseline: list[Part], data: st.DataObject) -> None:
    if not baseline:
        return
    hit = data.draw(st.sampled_from(baseline))
    deleted = data.draw(st.integers(1, hit.rows))
    mutated = Part(f"{hit.name}_9", hit.partition, hit.min_block, hit.max_block, hit.rows - deleted)
    verdict = judge(baseline, [mutated if p == hit else p for p in baseline])
    assert verdict.lost == deleted and verdict.inserted == 0


@given(tables(), new_rows)
def test_a_merge_keeps_every_row_of_the_parts_it_covers(
    baseline: list[Part], new: list[tuple[str, int]]
) -> None:
    live = baseline + inserted_after(baseline, new)
    merged: list[Part] = []
    for partition in PARTITIONS:
        inside = [p for p in live if p.partition == partition]
        if inside:
            low, high = min(p.min_block for p in inside), max(p.max_block for p in inside)
            merged.append(
                Part(f"{partition}_{low}_{high}_1", partition, low, high, sum(p.rows for p in inside))
            )
    verdict = judge(baseline, merged)
    assert verdict.ok and verdict.inserted == sum(r for _, r in new)


def test_a_missing_table_loses_its_baseline() -> None:
    verdict = judge(counted(7), None)
    assert (verdict.ok, verdict.after, verdict.lost) == (False, -1, 7)


def attach(source: list[Part], top: int, between: dict[int, int]) -> list[Part]:
    """What ``ATTACH PARTITION ALL FROM`` leaves in a destination whose highest block was ``top``
    (measured: numbered in its sequence, by partition then source block; a copy has its part's
    content); ``between`` puts an insert of that many rows, of its own content, before the copy at
    that position (as many rows as a source part may hold: rows alone cannot tell them apart)."""
    copies: list[Part] = []
    block = top
    for i, part in enumerate(sorted(source, key=lambda p: (p.partition, p.min_block))):
        if i in between:
            block += 1
            copies.append(
                Part(
                    f"{part.partition}_{block}_{block}_0",
                    part.partition,
                    block,
                    block,
                    between[i],
                    0,
                    f"i{i}",
                )
            )
        block += 1
        copies.append(
            replace(part, name=f"{part.partition}_{block}_{block}_0", min_block=block, max_block=block)
        )
    return copies


inserts_between = st.dictionaries(st.integers(0, 12), st.integers(1, 50), max_size=3)


@given(tables(), st.integers(0, 5), inserts_between)
def test_the_copies_of_an_attach_carry_the_baseline_exactly(
    source: list[Part], top: int, between: dict[int, int]
) -> None:
    copies = attach(source, top, between)
    mapping = map_attached(source, copies)
    assert set(mapping) == {p.name for p in source}
    verdict = judge(carry(source, mapping), copies)
    assert verdict.ok and verdict.kept == sum(p.rows for p in source)
    assert verdict.inserted == sum(rows for i, rows in between.items() if i < len(source))


@given(tables(), st.integers(0, 5), inserts_between, st.data())
def test_a_baseline_merged_before_the_copy_is_held_by_the_merged_part_s_copy(
    baseline: list[Part], top: int, between: dict[int, int], data: st.DataObject
) -> None:
    """Merges in the source between the baseline and the attach: the copies of the merged parts
    hold the baseline; emptied after the attach, the destination has lost every baseline row."""
    source: list[Part] = []
    for partition in PARTITIONS:
        inside = [p for p in baseline if p.partition == partition]
        cut = data.draw(st.integers(0, len(inside)))
        if cut > 1:
            low, high = inside[0].min_block, inside[cut - 1].max_block
            rows = sum(p.rows for p in inside[:cut])
            source.append(Part(f"{partition}_{low}_{high}_1", partition, low, high, rows, 0, f"m{partition}"))
            inside = inside[cut:]
        source.extend(inside)
    copies = attach(source, top, between)
    carried = carry(baseline, map_attached(source, copies))
    verdict = judge(carried, copies)
    assert verdict.ok and verdict.kept == sum(p.rows for p in baseline)
    inserts = [p for p in copies if p.digest.startswith("i")]
    assert judge(carried, inserts).lost == sum(p.rows for p in baseline)


@given(tables(), st.integers(0, 60))
def test_a_baseline_part_copied_nowhere_is_lost_whatever_the_destination_numbers(
    baseline: list[Part], top: int
) -> None:
    """The destination numbers its own blocks: a part of its own may take the block numbers a
    baseline part had in the source; that baseline part is still lost."""
    live = [Part(f"{p}_{b}_{b}_0", p, b, b, 1, 0, "writer") for p in PARTITIONS for b in range(1, top + 14)]
    verdict = judge(carry(baseline, {}), live)
    assert verdict.lost == sum(p.rows for p in baseline) and verdict.kept == 0


@given(tables(), st.data())
def test_a_source_part_not_attached_is_lost_after_the_move(source: list[Part], data: st.DataObject) -> None:
    if not source:
        return
    skipped = data.draw(st.sampled_from(source))
    copies = attach([p for p in source if p != skipped], 0, {})
    verdict = judge(carry(source, map_attached(source, copies)), copies)
    assert not verdict.ok and verdict.lost >= skipped.rows  # matched in order: never fewer


def copy_of(copied: list[Part], data: st.DataObject) -> tuple[list[Part], list[Part]]:
    """A rebuild's copy of ``copied``: the same rows cut into other parts, of other partitions (its
    parts, and the block range per partition that guards are told)."""
    total = sum(p.rows for p in copied)
    cuts = sorted(data.draw(st.lists(st.integers(1, max(1, total - 1)), max_size=6, unique=True)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True) if b > a] if total else []
    parts = [
        Part(f"{p}_{b}_{b}_0", p, b, b, r)
        for b, (p, r) in enumerate(((data.draw(st.sampled_from(["a", "b"])), r) for r in sizes), 1)
    ]
    ranges = {
        p.partition: Part(
            "",
            p.partition,
            min(q.min_block for q in parts if q.partition == p.partition),
            max(q.max_block for q in parts if q.partition == p.partition),
            0,
        )
        for p in parts
    }
    return parts, list(ranges.values())


@given(tables(), new_rows, new_rows, st.data())
def test_a_rebuilt_copy_carries_the_baseline_and_rows_inserted_after_it_pass(
    baseline: list[Part], along: list[tuple[str, int]], later: list[tuple[str, int]], data: st.DataObject
) -> None:
    copied = baseline + inserted_after(baseline, along)
    parts, ranges = copy_of(copied, data)
    live = parts + inserted_after(parts, [("a", r) for _, r in later])
    verdict = judge(carry_copied(baseline, copied, ranges, "copy"), live)
    assert verdict.ok
    assert (verdict.before, verdict.lost) == (sum(p.rows for p in baseline), 0)
    assert verdict.inserted == sum(r for _, r in along) + sum(r for _, r in later)


@given(tables(), new_rows, new_rows, st.data())
def test_a_row_deleted_from_a_rebuilt_copy_is_lost_however_many_were_inserted(
    baseline: list[Part], along: list[tuple[str, int]], later: list[tuple[str, int]], data: st.DataObject
) -> None:
    copied = baseline + inserted_after(baseline, along)
    parts, ranges = copy_of(copied, data)
    if not parts:
        return
    hit = data.draw(st.sampled_from(parts))
    deleted = data.draw(st.integers(1, hit.rows))
    parts = [
        Part(f"{p.name}_9", p.partition, p.min_block, p.max_block, p.rows - deleted) if p == hit else p
        for p in parts
    ]
    live = parts + inserted_after(parts, [("a", r) for _, r in later])
    assert judge(carry_copied(baseline, copied, ranges, "copy"), live).lost == deleted


@given(tables(), st.data())
def test_a_baseline_part_the_copy_did_not_read_is_lost_after_the_rebuild(
    baseline: list[Part], data: st.DataObject
) -> None:
    if not baseline:
        return
    gone = data.draw(st.sampled_from(baseline))
    copied = [p for p in baseline if p != gone]
    parts, ranges = copy_of(copied, data)
    assert judge(carry_copied(baseline, copied, ranges, "copy"), parts).lost == gone.rows


# -- edges, by example --------------------------------------------------------------------------------


def test_a_table_judged_by_its_count_keeps_or_loses_rows_by_the_count() -> None:
    assert judge(counted(5), counted(7)) == Verdict(5, 7, 5, 2, 0)
    assert judge(counted(5), counted(3)) == Verdict(5, 3, 3, 0, 2)
    assert judge(counted(7), None) == Verdict(7, -1, 0, 0, 7)


def test_an_empty_part_inserted_after_the_baseline_loses_nothing() -> None:
    baseline = [Part("p_1_1_0", "p", 1, 1, 4)]
    assert judge(baseline, [*baseline, Part("p_2_2_1", "p", 2, 2, 0)]) == Verdict(4, 4, 4, 0, 0)


def test_the_journal_keeps_a_part_as_a_row_and_reads_it_back() -> None:
    """Baselines, copies and carried parts are journaled as rows and read back by a resumed run."""
    assert [p.as_row() for p in counted(5)] == [["", "", 0, 0, 5]]
    for part in [Part("p_1_4_2", "p", 1, 4, 9), Part("copy", "p", 2, 3, 9, 4)]:
        assert Part.from_row(part.as_row()) == part
    assert Part.from_row(["p_1_4_2", "p", "1", "4", "9"]) == Part("p_1_4_2", "p", 1, 4, 9)
    assert Part.named("202401_3_7_1_12", "202401", 5) == Part("202401_3_7_1_12", "202401", 3, 7, 5)


def test_a_part_copied_nowhere_is_lost_even_beside_a_copy_numbered_as_it_was() -> None:
    """The destination numbers the copy of p_1_1_0 as block 2: the name p_2_2_0 the source part
    left behind had. A later insert merged with that copy must not make up for the lost part."""
    baseline = [Part("p_1_1_0", "p", 1, 1, 10), Part("p_2_2_0", "p", 2, 2, 5)]
    carried = carry(baseline, {"p_1_1_0": Part("p_2_2_0", "p", 2, 2, 10)})
    assert judge(carried, [Part("p_2_3_1", "p", 2, 3, 15)]) == Verdict(15, 15, 10, 5, 5)


def test_a_carried_part_keeps_its_name_and_its_rows_copied_along() -> None:
    baseline = [Part("p_1_1_0", "p", 1, 1, 10, 3)]
    assert carry(baseline, {"p_1_1_0": Part("p_4_4_0", "p", 4, 4, 13)}) == [Part("p_1_1_0", "p", 4, 4, 10, 3)]


def test_a_rebuilt_baseline_is_one_group_whatever_its_ranges_held() -> None:
    """The ranges the copy holds may come as parts with rows: the group's rows are the baseline's."""
    baseline = [Part("p_1_1_0", "p", 1, 1, 10), Part("q_2_2_0", "q", 2, 2, 5)]
    copied = [*baseline, Part("p_3_3_0", "p", 3, 3, 2)]
    ranges = [Part("a_1_2_0", "a", 1, 2, 9, 1), Part("b_3_3_0", "b", 3, 3, 8, 1)]
    carried = carry_copied(baseline, copied, ranges, "copy")
    assert carried == [Part("copy", "a", 1, 2, 15, 2), Part("copy", "b", 3, 3, 0)]
    assert judge(carried, [replace(r, along=0) for r in ranges]) == Verdict(15, 17, 15, 2, 0)


def test_a_rebuilt_baseline_without_copies_is_lost_even_to_a_table_judged_by_its_count() -> None:
    baseline = [Part("p_1_1_0", "p", 1, 1, 10)]
    carried = carry_copied(baseline, baseline, [], "copy")
    assert judge(carried, [*counted(10), Part("all_0_9_1", "", 0, 9, 10)]).lost == 10
