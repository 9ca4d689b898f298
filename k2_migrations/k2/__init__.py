"""The K2 market-data schema: its frozen baseline DDL and a synthetic data loader.

Kept apart from the generic migration framework so that the framework never depends on one
customer's schema, while K2's migrations, tests and benchmarks share one definition of it.
"""
