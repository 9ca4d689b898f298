"""Property tests of the pure decisions over system tables' rows: mutations, cluster hosts.

What they return decides whether a mutation is issued or waited for, and whether an ON CLUSTER
statement counts as done; the I/O around them is tested through the CLI (tests/test_kill_points.py,
tests/test_survivors.py, tests/test_cluster_embedded.py).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.decisions.hosts import HostResult, behind, host_results, queued_hosts
from k2_migrations.decisions.mutations import (
    Action,
    MutationRow,
    next_action,
    same_command,
    unfinished,
)

# -- mutations -----------------------------------------------------------------------------------

MUTATIONS = st.lists(
    st.builds(
        MutationRow,
        mutation_id=st.from_regex(r"mutation_[0-9]{1,3}\.txt", fullmatch=True),
        is_done=st.booleans(),
        parts_to_do=st.integers(0, 50),
        latest_fail_reason=st.sampled_from(["", "", "Code: 48. Not implemented"]),
    ),
    max_size=6,
)


@given(MUTATIONS)
def test_only_unfinished_mutations_are_waited_for_and_the_first_failed_one_stops_the_wait(
    rows: list[MutationRow],
) -> None:
    state = unfinished(rows)
    running = [m for m in rows if not m.is_done]
    assert state.running == bool(running)
    assert state.parts_left == sum(m.parts_to_do for m in running)
    failed = [m for m in running if m.latest_fail_reason]
    assert state.failed == (failed[0] if failed else None)


def test_a_finished_mutation_that_failed_once_does_not_stop_the_wait() -> None:
    done = MutationRow("mutation_1.txt", True, 0, "Code: 48")
    assert unfinished([done]) == unfinished([])
    assert not unfinished([done]).running and unfinished([done]).failed is None


@given(done=st.sampled_from([None, False, True]), waited=st.booleans(), issued=st.booleans())
def test_a_mutation_is_issued_only_when_nothing_says_it_ran_or_is_not_needed(
    done: bool | None, waited: bool, issued: bool
) -> None:
    action = next_action(done=done, waited=waited, issued_before=issued)
    if done:
        assert action is Action.SKIP
    elif waited or issued:
        assert action is Action.SETTLED
    else:
        assert action is Action.ISSUE


def test_a_resumed_mutation_without_done_when_is_not_issued_again() -> None:
    # The interrupted run's mutation finished before the resume: nothing runs, no check to ask.
    assert next_action(done=None, waited=False, issued_before=True) is Action.SETTLED
    assert next_action(done=None, waited=False, issued_before=False) is Action.ISSUE
    assert next_action(done=False, waited=True, issued_before=False) is Action.SETTLED


@given(
    st.from_regex(r"(UPDATE|DELETE) [a-z =+0-9]{1,20}", fullmatch=True), st.sampled_from([" ", "  ", "\n"])
)
def test_a_command_is_itself_however_the_engine_spaced_or_parenthesised_it(command: str, space: str) -> None:
    spaced = space.join(command.split())
    assert same_command(command, f"({spaced})")
    assert same_command(f"( {command} )", spaced)
    assert not same_command(command, command + " AND 1")


def test_different_commands_differ() -> None:
    assert not same_command("(UPDATE v = v + 1 WHERE 1)", "(UPDATE v = v + 2 WHERE 1)")
    assert not same_command("UPDATE v = 1", "(DELETE WHERE v = 1)")
    assert same_command("(UPDATE  v = v + 1 WHERE id = 1)", "UPDATE v = v + 1 WHERE id = 1")
    # Parenthesised around the whole command only, not merely ending in a parenthesis.
    assert same_command("(UPDATE v = 1 WHERE id IN (1))", "UPDATE v = 1 WHERE id IN (1)")
    assert same_command("(DELETE WHERE (a = 1) OR (b = 2))", "DELETE WHERE (a = 1) OR (b = 2)")


# -- cluster hosts -------------------------------------------------------------------------------

STATUS = st.one_of(st.none(), st.just(0), st.integers(1, 1000))


@given(st.lists(st.tuples(st.from_regex(r"ch-[0-9]", fullmatch=True), STATUS), max_size=6))
def test_a_host_is_done_only_when_it_reported_status_0(hosts: list[tuple[str, int | None]]) -> None:
    """NULL: neither finished nor failed within the timeout — behind, never done."""
    columns = ["host", "port", "status", "error", "num_hosts_remaining", "num_hosts_active"]
    rows = [[host, 9000, status, "" if status in (0, None) else "boom", 0, 0] for host, status in hosts]
    results = host_results(columns, rows)
    assert [r.host for r in results] == [f"{host}:9000" for host, _ in hosts]
    assert [r.done for r in results] == [status == 0 for _, status in hosts]
    assert [r.late for r in results] == [status is None for _, status in hosts]
    assert [r.failed for r in results] == [status not in (0, None) for _, status in hosts]
    assert [r.error for r in results] == ["" if status in (0, None) else "boom" for _, status in hosts]
    assert behind(results) == [r for r in results if r.status != 0]


def test_what_each_host_says() -> None:
    late, failed, done = (
        HostResult("a:9000", None),
        HostResult("b:9000", 57, " table\n exists "),
        HostResult("c", 0),
    )
    assert behind([late, failed, done]) == [late, failed]
    assert late.describe() == "behind (not finished in time; the task stays queued there)"
    assert failed.describe() == "failed: table exists"
    assert done.describe() == "done"
    assert HostResult("d", 3).reason == "code 3"


def test_a_replicated_database_names_its_hosts_by_shard_and_replica() -> None:
    results = host_results(
        ["shard", "replica", "status", "error"], [["s1", "r1", "0", None], ["s1", "r2", None, ""]]
    )
    assert results == [HostResult("s1|r1", 0, ""), HostResult("s1|r2", None, "")]
    assert host_results(["host", "status"], [["h", 0]]) == [HostResult("h", 0)]
    assert host_results(["host", "status"], [["nodeX", 0]])[0].host == "nodeX"
    assert host_results(["replica", "status"], [["r1", 0]])[0].host == "|r1"
    assert host_results(["shard", "status"], [["s1", 0]])[0].host == "s1|"


QUEUE_STATUS = st.sampled_from(["Inactive", "Active", "Finished", "Removing", "Unknown"])


@given(
    st.lists(
        st.tuples(st.sampled_from(["ch-1", "ch-2", "ch-3"]), st.sampled_from([9000, 9440]), QUEUE_STATUS)
    )
)
def test_hosts_behind_in_the_ddl_queue_are_those_with_a_task_not_finished(
    rows: list[tuple[str, int, str]],
) -> None:
    expected = {f"{h}:{p}" for h, p, s in rows if s not in ("Finished", "Removing")}
    assert queued_hosts(rows) == sorted(expected)
