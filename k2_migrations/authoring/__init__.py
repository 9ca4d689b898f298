"""Tools for people writing revisions, run before anything touches a database.

The operations make a revision safe only if the revision uses them; these tools read revision files
as source (never importing or executing them) to catch what bypasses that safety while it is still
cheap to fix: in review or CI, not halfway through a run on production.
"""
