"""The engine-neutral core: operations, guards, lock, journal, version table and run orchestration.

Nothing here knows whether it talks to a server or to chDB: where the engines differ (a RENAME the
engine refuses, say), the code reads the live state from system tables or reacts to the engine's answer.
"""
