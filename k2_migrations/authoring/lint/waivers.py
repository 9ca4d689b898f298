"""Waivers: ``# k2-lint: allow RULE[, RULE...] -- reason`` on the offending line or the line above.

A waiver is a decision a reviewer must be able to judge later, so its reason is required: one
without a reason waives nothing and is itself a finding (``waiver-without-reason``), as is one naming
no rule that can be waived (``waiver-unknown-rule``, e.g. a misspelt id). Waived findings are still
returned, with :attr:`Finding.waived_reason` set, so the CLI shows them without failing on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from k2_migrations.authoring.lint import (
    ddl_safety,
    dependents,
    guards,
    idempotency,
    kafka,
    revisions,
    sqlfiles,
    views,
)
from k2_migrations.authoring.lint.model import Finding, Rule, each_revision
from k2_migrations.authoring.lint.source import Hit, Waiver

#: The rules of the families, in the order --help and the docs list them.
FAMILY_RULES: tuple[Rule, ...] = (
    *revisions.RULES,
    *idempotency.RULES,
    *guards.RULES,
    *ddl_safety.RULES,
    *kafka.RULES,
    *sqlfiles.RULES,
    *views.RULES,
    *dependents.RULES,
)
WAIVABLE: frozenset[str] = frozenset(rule.id for rule in FAMILY_RULES if rule.waivable)


def problems(path: Path, waivers: list[Waiver]) -> Iterator[Hit]:
    """The findings of both waiver rules about a file's waivers (for a SQL file; a revision's come
    from the rules themselves)."""
    yield from _without_reason(path, waivers)
    yield from _unknown_rule(path, waivers)


def _without_reason(path: Path, waivers: list[Waiver]) -> Iterator[Hit]:
    for waiver in waivers:
        if waiver.rules and waiver.reason is None:
            yield Hit(
                path,
                "waiver-without-reason",
                waiver.line,
                waiver.line,
                f"the waiver of {', '.join(waiver.rules)} gives no reason, so it waives nothing",
            )


def _unknown_rule(path: Path, waivers: list[Waiver]) -> Iterator[Hit]:
    for waiver in waivers:
        unknown = [rule for rule in waiver.rules if rule not in WAIVABLE]
        if unknown or not waiver.rules:
            message = (
                f"the waiver names {', '.join(unknown)}, not a rule that can be waived"
                if unknown
                else "this k2-lint comment is not a waiver the linter understands"
            )
            fix = f"write # k2-lint: allow RULE-ID -- reason (in a SQL file: -- k2-lint: ...), RULE-ID one of: {', '.join(sorted(WAIVABLE))}"
            yield Hit(path, "waiver-unknown-rule", waiver.line, waiver.line, message, fix)


RULES = (
    Rule(
        "waiver-without-reason",
        "waivers",
        "a k2-lint waiver with no reason after ' -- ': it waives nothing",
        "write why the rule does not apply after ' -- ': # k2-lint: allow RULE-ID -- reason",
        each_revision(lambda revision: _without_reason(revision.path, revision.waivers)),
        waivable=False,
    ),
    Rule(
        "waiver-unknown-rule",
        "waivers",
        "a k2-lint waiver naming no rule that can be waived",
        "write # k2-lint: allow RULE-ID -- reason, naming the rule of the finding",
        each_revision(lambda revision: _unknown_rule(revision.path, revision.waivers)),
        waivable=False,
    ),
)


def apply(hits: list[Hit], waivers: list[Waiver], fixes: dict[str, str]) -> list[Finding]:
    """One file's findings by line: each hit a waiver with a reason covers (on a line of the offending
    code or the line above it) carries that reason."""
    by_line: dict[int, list[Waiver]] = {}
    for waiver in waivers:
        if waiver.reason is not None:
            by_line.setdefault(waiver.line, []).append(waiver)
    findings: list[Finding] = []
    for hit in sorted(hits, key=lambda h: (h.line, h.rule, h.message)):
        reason: str | None = None
        if hit.rule in WAIVABLE:
            reason = next(
                (
                    w.reason
                    for line in range(hit.line - 1, hit.last_line + 1)
                    for w in by_line.get(line, [])
                    if hit.rule in w.rules
                ),
                None,
            )
        fix = hit.fix if hit.fix is not None else fixes[hit.rule]
        findings.append(Finding(hit.path, hit.line, hit.rule, hit.message, fix, reason))
    return findings
