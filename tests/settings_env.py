"""Settings as a deployment's environment says them, and quick retries for tests with faults."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr

from billbridge.settings import RetrySettings

# Vendor faults in a test are retried after at most 10 ms, 50 ms at the longest: what is tested is that
# a retry happens and changes nothing, not how long it waits (tests/connectors check the waits).
QUICK_RETRY = RetrySettings(base_delay=0.01, max_delay=0.05)


def as_environment(prefix: str, model: BaseModel) -> dict[str, str]:
    """``model`` as BILLBRIDGE_ variables under ``prefix`` (nested keys joined by ``__``, secrets in
    plain, unset ones left out): ``as_environment("BILLBRIDGE_QUICKBOOKS", settings.quickbooks)``."""
    out: dict[str, str] = {}

    def walk(name: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{name}__{key.upper()}", inner)
        elif value is not None:
            out[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    walk(prefix, model.model_dump())
    return out
