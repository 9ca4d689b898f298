"""Errors a user can cause, each with the exit code of its class.

Every error that reaches the CLI is a :class:`K2MigrateError`: it prints as one line naming what is
wrong and what to do, and the process exits with the code of its class. The codes are a contract
for deploy scripts and CI (documented in the README):

====  ============  ==========================================================
code  class         meaning
====  ============  ==========================================================
0                   success
2     usage         bad arguments, URL, config, unknown or malformed revision
3     connection    cannot reach or log in to ClickHouse, embedded path unusable
4     lock          another run holds the migration lock (or the embedded path)
5     guard         a row-count guard found rows missing (or extra)
6     sql           a statement failed on ClickHouse
7     in-progress   a revision was left half-applied: resume or revert it
8     drift         the live schema differs from what the revision expects
130   interrupted   stopped by Ctrl-C or SIGTERM
====  ============  ==========================================================
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2
    CONNECTION = 3
    LOCK = 4
    GUARD = 5
    SQL = 6
    IN_PROGRESS = 7
    DRIFT = 8
    INTERRUPTED = 130


class K2MigrateError(Exception):
    """Base of every error meant for the user: one line, one exit code."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(K2MigrateError):
    """Bad arguments, configuration, URL or revision script."""

    exit_code = ExitCode.USAGE


class ConnectionFailed(K2MigrateError):
    """ClickHouse cannot be reached, refuses the login, or the embedded path is unusable."""

    exit_code = ExitCode.CONNECTION


class LockHeld(K2MigrateError):
    """Another run holds the migration lock."""

    exit_code = ExitCode.LOCK


class GuardFailed(K2MigrateError):
    """A row-count guard found a table whose count changed across an operation."""

    exit_code = ExitCode.GUARD


class SqlFailed(K2MigrateError):
    """ClickHouse rejected a statement."""

    exit_code = ExitCode.SQL


class InProgress(K2MigrateError):
    """A revision is half-applied; only resuming or reverting it may run."""

    exit_code = ExitCode.IN_PROGRESS


class DriftDetected(K2MigrateError):
    """The live schema is not what the revisions expect."""

    exit_code = ExitCode.DRIFT


class Interrupted(K2MigrateError):
    """The run was stopped by the user at a safe point."""

    exit_code = ExitCode.INTERRUPTED
