"""Pytest fixtures for the test Kafka broker.

Load them with ``pytest_plugins = ["tests.support.kafka_fixtures"]`` in the root ``conftest.py``, or
import the fixture into a test module. Tests that use them should be marked ``@pytest.mark.kafka``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.kafka_broker import KafkaBroker

__all__ = ["kafka_broker"]


def _import_error_reason() -> str | None:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError as exc:
        return f"the Kafka client is not installed (pip install 'confluent-kafka==2.16.1'): {exc}"
    return None


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A started Tansu broker on 127.0.0.1, shared by the whole session and stopped at its end.

    Skips (with the reason) when the Kafka client or the Tansu binary is unavailable. Tests share the
    broker, so each should use its own topic and consumer-group names.
    """
    reason = _import_error_reason()
    if reason is not None:
        pytest.skip(reason)
    from tests.support.kafka_broker import KafkaBroker, tansu_unavailable_reason

    reason = tansu_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with KafkaBroker() as broker:
        yield broker
