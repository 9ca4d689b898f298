"""How the CLI speaks: one line per error with its exit code, output that survives a closed pipe."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    pass

F = TypeVar("F", bound=Callable[..., Any])


def handled(json_flag: bool = False) -> Callable[[F], F]:
    """Turn K2MigrateError (and any surprise) into one line and the right exit code."""

    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from k2_migrations.config import mask_secrets
            from k2_migrations.errors import ExitCode, K2MigrateError

            as_json = bool(kwargs.get("as_json")) if json_flag else False
            try:
                return fn(*args, **kwargs)
            except K2MigrateError as exc:
                fail(mask_secrets(exc.message), int(exc.exit_code), as_json)
            except KeyboardInterrupt:
                fail(
                    "interrupted; run the same command again to resume where it stopped",
                    int(ExitCode.INTERRUPTED),
                    as_json,
                )
            except click.exceptions.Exit:
                raise
            except click.ClickException:
                end_open_bar()  # click prints its error next, on stderr
                raise
            except Exception as exc:
                if isinstance(exc, BrokenPipeError) and stdout_gone():
                    # A write outside _echo (Alembic's --sql script, a plain click.echo) found its
                    # reader gone: that reader has what it wanted. End quietly, as Python's
                    # convention is; a broken connection to ClickHouse is no such thing.
                    drop_stdout(sys.stdout)
                    return None
                if os.environ.get("K2_MIGRATE_DEBUG"):
                    raise
                detail = mask_secrets(str(exc)).strip().splitlines()
                fail(
                    f"unexpected {type(exc).__name__}: {detail[0] if detail else ''} "
                    "(a bug in k2-migrate; K2_MIGRATE_DEBUG=1 shows the traceback)",
                    1,
                    as_json,
                )

        return wrapper  # type: ignore[return-value]

    return decorate


def echo(message: str, err: bool = False) -> None:
    """click.echo that never fails a command: a closed stdout or stderr drops what is written to it.

    After the first EPIPE the stream goes to /dev/null, so the command still runs to its end and
    exits with its own status (a migration that completed, drift found by check): ``k2-migrate
    log | head -2`` or ``upgrade 2>&1 | head -c 1`` change nothing but what is printed.

    A progress bar drawn on the terminal is ended first: stdout and stderr often share one screen,
    and a message written on the bar's line (``[#####]  16.7%k2-migrate: error: ...``) reads as one.
    """
    end_open_bar()
    try:
        click.echo(message, err=err)
    except BrokenPipeError:
        drop_stdout(sys.stderr if err else sys.stdout)


def summary(message: str) -> None:
    """Print text that only reports on what was done (a run's summary, a note): nothing under ``-q``.

    As with Alembic's ``-q``, a quiet command prints nothing but its errors, so that a script or a
    cron job hears from it only when something is wrong. What a command is asked for — a ``--json``
    document, the rows of ``log`` or ``current`` — is output, printed with :func:`echo` all the same.
    """
    if not quiet():
        echo(message)


def quiet() -> bool:
    """Whether ``-q`` was given to the running command (False outside one)."""
    ctx = click.get_current_context(silent=True)
    options = ctx.find_root().obj if ctx is not None else None
    return bool(isinstance(options, dict) and options.get("quiet"))


def end_open_bar() -> None:
    """End a progress bar's line on the terminal (imported here: ``--help`` loads little but click)."""
    from k2_migrations.output.progress import end_open_bar as end

    end()


def stdout_gone() -> bool:
    """True when stdout is a pipe (or socket) whose reader has gone: poll reports an error on it."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def drop_stdout(stream: Any) -> None:
    from k2_migrations.output.progress import drop_output

    drop_output(stream)


def fail(message: str, code: int, as_json: bool) -> None:
    """The error as one line on stderr (and the JSON document with ``--json``), then exit ``code``.

    A message may quote what the user typed; a control character in it (a newline, or ``\\x85``,
    which Python and many terminals treat as one) is shown escaped, so the error stays one line.
    """
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    if as_json:
        from k2_migrations.output.jsondoc import dump

        echo(dump({"ok": False, "error": message, "exit_code": code}))
    echo(f"k2-migrate: error: {message}", err=True)
    sys.exit(code)


def usage_error(message: str) -> Exception:
    from k2_migrations.errors import UsageError

    return UsageError(message)
