"""Static checks of revision files, run before any database exists: the library behind ``k2-migrate lint``."""

from k2_migrations.authoring.lint.engine import ALL_RULES, RULES, Finding, Rule, lint_paths, lint_source

__all__ = ["ALL_RULES", "RULES", "Finding", "Rule", "lint_paths", "lint_source"]
