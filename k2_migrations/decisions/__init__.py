"""Pure decisions over the rows the engine returned: no I/O, property-tested, mutation-tested.

Each module here answers one question the run must get right (which revisions are applied, whether
an attempt is in progress, whether a lock holder is dead, whether a guard passed, whether a mutation
must be issued or waited for, which cluster hosts are behind) from plain values that the I/O layers
(``state/``, ``operations/``, ``introspection/``) read from system tables and hand in. Nothing here
imports a client: the lowest layer, imported by those above it.
"""
