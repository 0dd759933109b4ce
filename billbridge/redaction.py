"""Credentials never reach a log: what the HTTP and vendor libraries log at DEBUG is redacted where
each record is made, before any handler (stderr, Prefect's log table, a file) sees it.

At DEBUG, requests-oauthlib logs ``Adding token {'access_token': ..., 'refresh_token': ...}`` and
the token requests' bodies, hubspot-api-client logs response bodies (a token refresh's answer), and
any library may log a header or a URL. A ``logging.Filter`` on the named loggers would not do:
records of their child loggers (``requests_oauthlib.oauth2_session``) reach handlers without
passing a parent logger's filters, and Prefect replaces the handlers when it configures logging. So
``install`` puts ``RedactCredentials`` into the log record factory, for the records of
``CREDENTIAL_LOGGERS`` (and their children): their message, exception and stack text keep their
shape with every credential value replaced by ``[REDACTED]``.

``install`` runs wherever billbridge starts: the CLI, the flows package (what Prefect workers
import), the API (``create_app``). It is idempotent.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable
from typing import Any

CREDENTIAL_LOGGERS = (
    "requests_oauthlib",
    "oauthlib",
    "urllib3",
    "requests",
    "httpx",
    "httpcore",
    "stripe",
    "simple_salesforce",
    "hubspot",
    "intuitlib",
    "quickbooks",
    "billbridge",
)
"""Loggers (with their children) whose records may carry a credential: HTTP clients, OAuth
libraries, the vendor SDKs, and our own."""

REDACTED = "[REDACTED]"
_KEYS = (
    r"access_token|refresh_token|id_token|client_secret|client_assertion|code_verifier|assertion|password|passwd"
    r"|api_key|apikey|hapikey|secret|secret_key|token|session_?id|private_key|webhook_secret|verifier_token"
    r"|authorization|proxy-authorization|x-api-key"
)
_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    # Authorization header values wherever they stand: "Bearer <token>", "Basic <base64>"
    (
        re.compile(r"(?<![\w/])(Bearer|Basic|Digest)\s+[\w\-.~+/]+=*", re.IGNORECASE),  # not ".../tokens/bearer"
        lambda m: f"{m[1]} {REDACTED}",
    ),
    # 'key': 'value', "key": "value", key=value, key: value (dict reprs, JSON, form bodies, URLs,
    # headers, BILLBRIDGE_STRIPE__API_KEY=...): the key must be followed by its separator
    (
        re.compile(
            rf"(?P<key>(?<![A-Za-z0-9-])['\"]?(?:{_KEYS})['\"]?)(?P<sep>\s*[:=]\s*)"
            r"(?P<value>b?'(?:[^'\\]|\\.)*'|b?\"(?:[^\"\\]|\\.)*\"|[^\s&,;)}\]'\"]+)",
            re.IGNORECASE,
        ),
        lambda m: f"{m['key']}{m['sep']}{_kept_quotes(m['value'])}",
    ),
    # Stripe keys and webhook secrets by their shape
    (re.compile(r"\b(?:sk|rk)_(?:test|live)_\w+|\bwhsec_\w+"), lambda m: REDACTED),
    # SOAP logins (Salesforce): <password>...</password>, <sessionId>...</sessionId>
    (
        re.compile(r"<(?P<tag>[\w:]*(?:password|sessionId))>[^<]*</(?P=tag)>", re.IGNORECASE),
        lambda m: f"<{m['tag']}>{REDACTED}</{m['tag']}>",
    ),
)


def _kept_quotes(value: str) -> str:
    prefix = "b" if value[:2] in ("b'", 'b"') else ""
    quoted = value[len(prefix) :]
    if quoted[:1] in ("'", '"'):
        return f"{prefix}{quoted[0]}{REDACTED}{quoted[0]}"
    return REDACTED


def redact(text: str) -> str:
    """``text`` with every credential value replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactCredentials(logging.Filter):
    """Redacts a record's message, exception and stack text in place (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not format: leave it to the handler's error path
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _watched(name: str) -> bool:
    return any(name == root or name.startswith(f"{root}.") for root in CREDENTIAL_LOGGERS)


_lock = threading.Lock()
_installed: list[Callable[..., logging.LogRecord]] = []


def install() -> None:
    """Redact every record of ``CREDENTIAL_LOGGERS`` as it is made (idempotent; keeps any record
    factory installed before)."""
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()
        redacting = RedactCredentials()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _watched(record.name):
                redacting.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed.append(factory)


def installed() -> bool:
    """Whether this process redacts (its record factory is ours, or wraps ours)."""
    return bool(_installed)
