"""The planted bugs: one exact piece of text in one module, what it becomes, and the tests that must fail.

Each is a bug that would lose data, misreport what is applied, run twice at once or leak a secret —
the promises k2-migrate makes — and each names the test (a real ``k2-migrate`` process where the
promise crosses processes) that is its safety net. Keep ``original`` short but unique in its file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    why: str


MUTANTS: list[Mutant] = [
    Mutant(
        "move-loss-check-one-sided",
        "k2_migrations/operations/moves.py",
        '            if not verdict.ok:\n                raise GuardFailed(\n                    f"guard: {self.destination} holds',
        '            if verdict.after < 0:\n                raise GuardFailed(\n                    f"guard: {self.destination} holds',
        (
            "tests/test_kill_points.py::test_rows_lost_between_a_move_and_its_count_stop_the_run_and_say_where_the_data_is",
        ),
        "a move that lost rows would pass its own check",
    ),
    Mutant(
        "guard-ignores-loss",
        "k2_migrations/engine/results.py",
        "return self.lost == 0 and self.after >= 0",
        "return True",
        ("tests/test_guard_drops.py",),
        "check_guards would let any loss through",
    ),
    Mutant(
        "mutation-reissued-after-crash",
        "k2_migrations/operations/mutations.py",
        "waited = self._wait_for_running(rt)",
        "waited = False",
        (
            "tests/test_kill_points.py::test_killed_while_its_mutation_runs_the_step_waits_for_it_and_never_reissues_it",
        ),
        "a resumed run would issue a mutation a killed run already issued",
    ),
    Mutant(
        "resume-redoes-done-steps",
        "k2_migrations/engine/executor.py",
        "        if done is not None:\n",
        "        if False:\n",
        ("tests/test_guard_drops.py", "tests/test_kill_points.py"),
        "a resumed run would redo the steps an interrupted run finished, and forget what they left",
    ),
    Mutant(
        "changed-revision-resumed",
        "k2_migrations/engine/executor.py",
        "if done is not None and done.operation != mask_secrets(key):",
        "if False:",
        (
            "tests/test_kill_points.py::test_a_revision_changed_after_its_interrupted_run_is_refused_until_restored",
        ),
        "a revision edited after a crash would be resumed by step number, skipping the wrong work",
    ),
    Mutant(
        "partition-move-drops-an-incomplete-source",
        "k2_migrations/operations/moves.py",
        '        if not verdict.ok:\n            raise GuardFailed(\n                f"guard: {self.destination} has',
        '        if False:\n            raise GuardFailed(\n                f"guard: {self.destination} has',
        ("tests/test_kill_points.py::test_rows_lost_while_partitions_are_attached_keep_the_source",),
        "a partition move would drop its source while the copy misses rows",
    ),
    Mutant(
        "version-old-head-kept",
        "k2_migrations/decisions/heads.py",
        "return {**dict.fromkeys(old - new, False), **dict.fromkeys(new - old, True)}",
        "return dict.fromkeys(new - old, True)",
        ("tests/test_walk.py", "tests/test_version_state.py"),
        "a revision and its parent both applied after an upgrade step",
    ),
    Mutant(
        "version-any-row-counts",
        "k2_migrations/state/versions.py",
        "HAVING argMax(applied, seq) = 1",
        "HAVING max(applied) = 1",
        ("tests/test_walk.py",),
        "a revision once applied would stay applied after its downgrade",
    ),
    Mutant(
        "version-seq-not-increasing",
        "k2_migrations/state/versions.py",
        "(SELECT max(seq) FROM {log}) + 1",
        "(SELECT max(seq) FROM {log})",
        ("tests/test_walk.py", "tests/test_version_state.py"),
        "two changes with one seq: which is newest is left to chance",
    ),
    Mutant(
        "committed-attempt-not-settled",
        "k2_migrations/commands/migrate.py",
        '    if committed:\n        runtime.close_attempt(attempt, "done")',
        '    if False:\n        runtime.close_attempt(attempt, "done")',
        ("tests/test_walk.py::test_a_kill_at_the_version_change_converges",),
        "a run killed after its version change would be stuck in progress",
    ),
    Mutant(
        "in-progress-forgotten",
        "k2_migrations/decisions/attempts.py",
        "return self.status in OPEN_STATUSES",
        "return False",
        ("tests/test_guard_drops.py", "tests/test_kill_points.py"),
        "a half-applied revision would not be resumed or reported",
    ),
    Mutant(
        "secrets-not-masked",
        "k2_migrations/config.py",
        "    for match in _SQL_SECRET.finditer(text):\n        register_secret(match.group(2))",
        "    return text\n    for match in _SQL_SECRET.finditer(text):\n        register_secret(match.group(2))",
        ("tests/test_secrets.py",),
        "passwords in output, logs, the journal",
    ),
    Mutant(
        "keeper-lock-never-refuses",
        "k2_migrations/state/lock.py",
        "            return self._keeper_insert(LOCK_KEY)\n",
        "            self._keeper_insert(LOCK_KEY)\n            return True\n",
        ("tests/test_keeper_lock.py",),
        "two hosts of one cluster would migrate at the same time",
    ),
    Mutant(
        "table-lock-never-refuses",
        "k2_migrations/state/lock.py",
        "        if not self._try_create():\n            return False",
        "        if not self._try_create() and False:\n            return False",
        ("tests/test_safety.py::test_lock_held_by_a_live_run_is_refused",),
        "two runs against one server would migrate at the same time",
    ),
    Mutant(
        "embedded-path-not-waited-for",
        "k2_migrations/backends/embedded.py",
        "    deadline = started + wait_s\n",
        "    deadline = started\n",
        ("tests/test_embedded_busy.py",),
        "a second run would fail at once instead of waiting --lock-timeout for the embedded path",
    ),
    Mutant(
        "cluster-state-one-host",
        "k2_migrations/introspection/topology.py",
        "        if local and not self.cloud:\n",
        "        if local and False:\n",
        (
            "tests/test_cluster_embedded.py::test_cluster_mode_refuses_migrations_tables_a_one_server_run_created",
        ),
        "cluster mode would read a version state that lives on one host only",
    ),
    Mutant(
        "read-only-replica-ignored",
        "k2_migrations/introspection/topology.py",
        "    if rows:\n        database, table, readonly",
        "    if False:\n        database, table, readonly",
        (
            "tests/test_cluster_embedded.py::test_a_read_only_replica_stops_a_cluster_run_before_anything_is_created",
        ),
        "a cluster run would start on a replica that cannot replicate what it writes",
    ),
    # The classes an audit planted that the suite let through (issue 19): tests/test_survivors.py.
    Mutant(
        "version-newest-by-time",
        "k2_migrations/state/versions.py",
        "HAVING argMax(applied, seq) = 1",
        "HAVING argMax(applied, at) = 1",
        (
            "tests/test_survivors.py::test_a_change_written_by_a_host_with_a_fast_clock_does_not_outrank_the_changes_after_it",
        ),
        "a change written by a host with a fast clock would outrank the changes after it",
    ),
    Mutant(
        "lock-foreign-pid-checked-here",
        "k2_migrations/decisions/lock.py",
        "holder_host == this_host and holder_pid > 0",
        "holder_pid > 0",
        (
            "tests/test_survivors.py::test_a_holder_on_another_host_is_judged_by_its_heartbeat_not_by_a_local_pid",
        ),
        "a live holder on another host would be broken because its pid is dead here",
    ),
    Mutant(
        "revert-flag-lost-on-failure",
        "k2_migrations/decisions/attempts.py",
        "attempt.revert = attempt.revert or bool(",
        "attempt.revert = bool(",
        ("tests/test_survivors.py::test_a_revert_that_failed_half_way_is_resumed_as_a_revert",),
        "a failed revert would be closed as done on the next run, its undoing left half-way",
    ),
    Mutant(
        "mutation-without-check-reissued",
        "k2_migrations/operations/mutations.py",
        "issued = not self.done_when and rt.resuming_step and self._issued_before(rt)",
        "issued = False",
        (
            "tests/test_survivors.py::test_a_mutation_without_done_when_killed_after_it_was_issued_is_never_issued_again",
        ),
        "a mutation without done_when would be applied twice after a kill",
    ),
    Mutant(
        "rebuild-resume-attaches-all-again",
        "k2_migrations/operations/rebuild_copy.py",
        'left = unattached(landing["before"], landing["adds"], counts)',
        'left = sorted(landing["adds"])',
        (
            "tests/test_rebuild_table.py::test_a_run_that_died_inside_attach_all_is_finished_partition_by_partition",
        ),
        "a rebuild resumed after a half-done ATTACH would attach the partitions already there a second time",
    ),
    Mutant(
        "rebuild-resume-restages-a-landed-unit",
        "k2_migrations/operations/rebuild_copy.py",
        "            if landing is None:\n                self._copy_unit(",
        "            if True:\n                self._copy_unit(",
        (
            "tests/test_rebuild_table.py::test_killed_at_each_point_the_rebuild_resumes_without_loss_or_duplicates",
        ),
        "a rebuild killed after copying or attaching a unit would copy that unit again on resume: every row twice",
    ),
    Mutant(
        "rebuild-resume-keeps-a-part-written-partition",
        "k2_migrations/operations/rebuild_copy.py",
        "        for pid in drop:\n",
        "        for pid in []:\n",
        (
            "tests/test_rebuild_table.py::test_a_run_that_died_inside_its_straight_copy_drops_what_it_half_wrote_and_copies_the_rest",
        ),
        "a rebuild resumed after dying inside its INSERT would copy a part-written partition on top of what it wrote",
    ),
    Mutant(
        "rebuild-straight-copy-across-partitionings",
        "k2_migrations/operations/rebuild_copy.py",
        "if not self.same_partitions or any(",
        "if any(",
        (
            "tests/test_rebuild_table.py::test_engine_partition_key_and_a_column_type_change_together_keep_every_row",
        ),
        "a rebuild to a new PARTITION BY would count its copy under the old partition ids",
    ),
]
