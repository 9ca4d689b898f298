"""A child process holding a scratch embedded engine: the request in as JSON, its document out.

chDB holds one data path per process, and the process running k2-migrate may hold the target's:
every scratch engine (normalising the declared schema, proving a revision, replaying the
revisions) therefore runs in a child of its own, started here, one way for all three.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from k2_migrations.errors import ConnectionFailed


def run_child(
    module: list[str],
    request: object,
    doing: str,
    timeout_s: float,
    *,
    cwd: Path | None = None,
    hint: str = "",
) -> dict[str, Any]:
    """Run ``python -m MODULE...`` with ``request`` on stdin and return the JSON document it prints.

    ``doing`` names the work in the one line a failure becomes: it ran past ``timeout_s`` (``hint``
    says what to do then), or ended without its document (the last line it wrote to stderr).
    """
    try:
        done = subprocess.run(
            [sys.executable, "-m", *module],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired:
        raise ConnectionFailed(f"{doing} took over {timeout_s:.0f} s{hint}") from None
    try:
        result = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        lines = done.stderr.strip().splitlines()
        raise ConnectionFailed(f"{doing} failed: {lines[-1] if lines else done.returncode}")
    return result
