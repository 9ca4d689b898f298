"""JSON documents: one encoder for every ``--json`` output, with secrets masked and times in ISO 8601.

Documents are built from dataclasses and plain values. Each is first turned into plain JSON values —
a dataclass into its fields, a time into ISO 8601 (``2026-11-28T12:00:00+00:00``; the engine's
``DateTime64(..., 'UTC')`` columns come back without a zone, and are UTC), a path into its text, a set
into a sorted list — and every string is masked *then*, value by value: masking the finished text
instead would turn a password that happens to spell JSON (``fals``, ``null``) into broken JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from k2_migrations.config import mask_secrets


def dump(document: Any) -> str:
    """``document`` as indented JSON, every password masked."""
    return json.dumps(plain(document), indent=2)


def plain(value: Any) -> Any:
    """``value`` as plain JSON values (str, int, float, bool, None, list, dict), strings masked."""
    if isinstance(value, str):
        return mask_secrets(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {mask_secrets(str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return mask_secrets(str(value))
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return mask_secrets(str(value))
