"""Print mutmut's score from its CI/CD stats: ``python -m tests.mutants.score mutants/mutmut-cicd-stats.json``.

Exits 1 below :data:`GOAL` percent killed, so ``make mutants`` fails when the tests stop catching
bugs in the decisions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: Killed mutants (timeouts count as killed), as a percentage of those tested.
GOAL = 90.0


def main(path: str) -> int:
    stats = json.loads(Path(path).read_text())
    tested = int(stats["total"]) - int(stats.get("skipped", 0))
    killed = int(stats["killed"]) + int(stats.get("timeout", 0))
    score = 100.0 * killed / tested if tested else 0.0
    print(
        f"mutation score: {killed}/{tested} killed ({score:.1f} %); survived {stats.get('survived', 0)},"
        f" no tests {stats.get('no_tests', 0)}, suspicious {stats.get('suspicious', 0)}; goal {GOAL:g} %"
    )
    return 0 if score >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
