"""Benchmarks of k2-migrations on the embedded engine (chDB): scripts that print tables, not timed tests.

Each module is runnable as ``python -m bench.NAME [--quick]`` from the project root and prints the
machine it ran on, then one or more tables whose figures were all measured side by side in that one
run (medians of several runs, with the load average next to them), then the bars it checks:

- :mod:`bench.pause` — how long ingestion is paused by the K2 move (k2_003) at 1x, 10x and 100x the
  handoff's volumes, each run a fresh k2-migrate process, and which statements run during the pause;
- :mod:`bench.live_pause` — the same pause the way a server runs it: the engine held open in one
  process, its Kafka consumers settled on a live local broker, the migration run in that process;
- :mod:`bench.overhead` — ``k2-migrate upgrade head`` as a whole process against a plain script that
  runs the same statements and guard queries through clickhouse-connect;
- :mod:`bench.guards` — what the row-count guards cost at each volume (``count()`` from part metadata);
- :mod:`bench.startup` — ``k2-migrate --help`` and ``k2-migrate current`` against ``python -c pass``;
- :mod:`bench.window_end` — the k2_004 ``window_end`` fill against candles and against trades.

``python -m bench.run_all [--quick]`` runs them all and prints every table. Databases are prepared by
processes of their own (:mod:`bench.templates`), and everything that opens one runs in a child process
(:mod:`bench.worker`): chDB allows one data directory per process.
"""
