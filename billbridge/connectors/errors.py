"""One place that says whether a failed vendor call may be retried, and one retry loop that acts on it.

Each connector declares a ``Classifier`` for its SDK's exceptions (it returns None for exceptions
it does not recognise); transport failures (connection refused or dropped, timeouts) are
classified here for every vendor. Retries happen in ``call_with_retries`` and nowhere else:
429 and 5xx and timeouts are retried with backoff and jitter, honouring Retry-After; an expired
credential is refreshed once and the call repeated; anything else fails at once.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import requests
import urllib3.exceptions

if TYPE_CHECKING:
    from billbridge.settings import RetrySettings

T = TypeVar("T")
log = logging.getLogger("billbridge.connectors")


class ErrorKind(enum.StrEnum):
    RETRIABLE = "retriable"  # throttled, vendor-side failure, timeout, dropped connection
    AUTH = "auth"  # the credential expired or was revoked: refresh, then try again
    FATAL = "fatal"  # the request itself is wrong: retrying cannot help


@dataclass(frozen=True)
class Classified:
    kind: ErrorKind
    reason: str
    retry_after: float | None = None  # seconds the vendor asked us to wait


Classifier = Callable[[BaseException], "Classified | None"]


class VendorError(Exception):
    """A vendor call that failed for good (fatal, out of retries, or auth that a refresh did not fix)."""

    def __init__(self, vendor: str, classified: Classified, attempts: int) -> None:
        self.vendor, self.classified, self.attempts = vendor, classified, attempts
        super().__init__(f"{vendor}: {classified.kind}: {classified.reason} (after {attempts} attempt(s))")


_TRANSPORT = (
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,  # the connection dropped mid-body (a lost response)
    requests.Timeout,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.NewConnectionError,
    ConnectionError,
    TimeoutError,
)


def classify_status(status: int, retry_after: str | None = None, reason: str = "") -> Classified:
    """The generic meaning of an HTTP status, for classifiers that see one."""
    text = f"HTTP {status}" + (f": {reason}" if reason else "")
    if status == 429 or status >= 500:
        return Classified(ErrorKind.RETRIABLE, text, parse_retry_after(retry_after))
    if status == 401:
        return Classified(ErrorKind.AUTH, text)
    return Classified(ErrorKind.FATAL, text)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by these vendors)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def classify(exc: BaseException, classifier: Classifier) -> Classified:
    found = classifier(exc)
    if found is not None:
        return found
    if isinstance(exc, _TRANSPORT):
        return Classified(ErrorKind.RETRIABLE, f"{type(exc).__name__}: {exc}")
    return Classified(ErrorKind.FATAL, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    @classmethod
    def of(cls, settings: RetrySettings) -> RetryPolicy:
        """The policy a vendor's ``retry`` settings say."""
        return cls(settings.attempts, settings.base_delay, settings.max_delay)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter exponential backoff; a vendor's Retry-After is a floor."""
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        return min(self.max_delay, max(backoff, retry_after or 0.0))


def call_with_retries(
    vendor: str,
    call: Callable[[], T],
    classifier: Classifier,
    *,
    policy: RetryPolicy = RetryPolicy(),
    refresh: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "call",
) -> T:
    """Run ``call``; retry what may be retried, refresh the credential once on an auth failure.

    Each retry and refresh is logged with the vendor, ``what`` was called and the classifier's reason
    (a status and the vendor's error code), never the request, the answer or a credential."""
    refreshed = False
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            classified = classify(exc, classifier)
            if classified.kind == ErrorKind.AUTH and refresh is not None and not refreshed:
                log.info("%s %s: refreshing the credential (%s)", vendor, what, classified.reason)
                refresh()
                refreshed = True
                continue
            if classified.kind != ErrorKind.RETRIABLE or attempt >= policy.attempts:
                raise VendorError(vendor, classified, attempt) from exc
            delay = policy.delay(attempt, classified.retry_after)
            log.info(
                "%s %s: attempt %d failed (%s); retrying in %.2fs", vendor, what, attempt, classified.reason, delay
            )
            sleep(delay)
