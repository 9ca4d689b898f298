"""A ClickHouse server over HTTP or HTTPS."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from k2_migrations.backends import Backend, connect
from k2_migrations.config import Target, mask_secrets
from k2_migrations.errors import ConnectionFailed, UsageError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

CONNECT_TIMEOUT_S = 10
# Mutations and partition moves can take long on big tables; the client must not give up first.
SEND_RECEIVE_TIMEOUT_S = 3600


def _connect_args(target: Target) -> dict[str, Any]:
    args: dict[str, Any] = {
        "host": target.host,
        "port": target.port,
        "username": target.username,
        "password": target.password,
        "database": target.database,
        "secure": target.secure,
        "verify": target.verify,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "send_receive_timeout": SEND_RECEIVE_TIMEOUT_S,
    }
    if target.ca_cert:
        args["ca_cert"] = target.ca_cert
    return args


def server_client(target: Target) -> Client:
    import clickhouse_connect

    client: Client = clickhouse_connect.get_client(**_connect_args(target), autogenerate_session_id=False)
    return client


def open_server(target: Target) -> Backend:
    return connect(target, _connect_args(target), classify_connect_error)


def classify_connect_error(target: Target, exc: BaseException) -> Exception:
    """Turn a driver failure at connect time into one line that says what to do."""
    text = mask_secrets(str(exc))
    where = target.display()
    if "AUTHENTICATION_FAILED" in text or "Code: 516" in text or "Code: 192" in text:
        return ConnectionFailed(
            f"ClickHouse at {where} refused the login for user {target.username!r}; "
            "check the user and the password (K2_MIGRATE_PASSWORD or K2_MIGRATE_PASSWORD_FILE)"
        )
    if "UNKNOWN_DATABASE" in text or "Code: 81" in text:
        return UsageError(
            f"database {target.database!r} does not exist on {where}; create it or name another in the URL"
        )
    lowered = text.lower()
    if "ssl" in lowered or "certificate" in lowered:
        return ConnectionFailed(
            f"TLS handshake with {where} failed ({_first_line(text)}); give the server's CA with "
            "?ca_cert=/path/ca.pem, or ?verify=false for a test server only"
        )
    return ConnectionFailed(
        f"cannot reach ClickHouse at {where} ({_reason(text)}); check host, port and that the server is up"
    )


def _reason(text: str) -> str:
    lowered = text.lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("name or service not known", "host name not found"),
        ("failed to resolve", "host name not found"),
        ("temporary failure in name resolution", "host name not found"),
        ("timed out", "timed out"),
        ("network is unreachable", "network unreachable"),
    ):
        if needle in lowered:
            return reason
    return _first_line(text)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    return line[:200]
