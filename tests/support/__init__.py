"""Test-only support code: the Kafka broker harness and its pytest fixtures."""
