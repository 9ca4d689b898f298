"""Unit tests of the pure decisions at their edges, beside their property tests: digests recorded
by earlier runs, the rebuild's copy units and recorded progress, mutation ids without digits, the
freshness window's bound.
"""

from __future__ import annotations

from typing import Any

from k2_migrations.decisions.columns import mutation_number
from k2_migrations.decisions.digests import source_digest, sql_files_run
from k2_migrations.decisions.freshness import WINDOW_S, Freshness, freshness
from k2_migrations.decisions.guards import Part
from k2_migrations.decisions.rebuild import copied_parts, copy_units


def test_a_digest_recorded_by_an_earlier_run_stays_the_same() -> None:
    """Digests are compared with those the version record kept from earlier runs (and releases):
    the same files must give the same hex, or every applied revision would look edited."""
    files = {"u.sql": b"SELECT 1;\r\n", "gone.sql": None}
    assert (
        source_digest(b"a\r\nb\n", files)
        == "2d541a6f41bd92d92f831837f26a88049244933a840907ebb3b7fade79975d21"
    )
    assert source_digest(b"x", {}) == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_a_run_sql_file_call_without_a_path_names_no_file() -> None:
    assert sql_files_run("op.run_sql_file()\nop.run_sql_file(other='a.sql')\n") == ()


def test_a_mutation_id_without_digits_orders_first() -> None:
    assert mutation_number("odd") == 0 < mutation_number("mutation_1.txt")


def test_copy_units_count_every_row_of_a_partition_and_nothing_more() -> None:
    assert copy_units([("a", 0), ("b", 0), ("c", 5)], 1) == [["a", "b", "c"]]
    assert copy_units([("a", 2), ("a", 3), ("b", 1), ("c", 1)], 5) == [["a"], ["b", "c"]]
    assert copy_units([("a", 1), ("b", 1), ("c", 1)], 2) == [["a", "b"], ["c"]]


def test_a_rebuild_s_recorded_progress_gives_the_parts_copied_and_the_ranges_swapped_in() -> None:
    rounds: list[dict[str, Any]] = [
        {"parts": {"p": [["p_1_2_1", 7]], "q": [["q_3_3_0", "2"]]}},
        {"parts": {"p": [["p_4_4_0", 1]]}},
    ]
    copied, copies = copied_parts(rounds, [["p", "1", 5], ["q", 6, "6"]])
    assert copied == [
        Part("p_1_2_1", "p", 1, 2, 7),
        Part("q_3_3_0", "q", 3, 3, 2),
        Part("p_4_4_0", "p", 4, 4, 1),
    ]
    assert copies == [Part("", "p", 1, 5, 0), Part("", "q", 6, 6, 0)]


def test_a_batch_at_the_window_s_far_end_gives_the_flush_interval() -> None:
    assert freshness([100 - WINDOW_S, 100], 100, 104) == Freshness(2, WINDOW_S, 4)
    assert freshness([99 - WINDOW_S, 100], 100, 104) == Freshness(2, None, 4)
