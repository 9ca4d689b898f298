"""JSON documents: one encoder for every ``--json`` output, with secrets masked and times in ISO 8601.

Documents are built from dataclasses and plain values; the encoder turns a dataclass into its fields,
a time into ISO 8601 (``2026-11-28T12:00:00+00:00``; the engine's ``DateTime64(..., 'UTC')`` columns
come back without a zone, and are UTC), a path into its text and a set into a sorted list.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from k2_migrations.config import mask_secrets


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
        if isinstance(o, datetime):
            return (o if o.tzinfo else o.replace(tzinfo=UTC)).isoformat()
        if isinstance(o, date):
            return o.isoformat()
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, set | frozenset):
            return sorted(o)
        return super().default(o)


def dump(document: Any) -> str:
    """``document`` as indented JSON, every password masked."""
    return mask_secrets(json.dumps(document, indent=2, cls=_Encoder))
