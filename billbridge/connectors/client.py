"""The one "counted, paced, retried, refreshed" vendor call every connector's client is built on.

A vendor client subclasses ``VendorClient``, names its vendor and its error classifier, and runs each
SDK call through ``call``: the attempt is counted (``calls``: HTTP attempts, retries included, what a
vendor's rate limit and our benchmarks count), paced under the vendor's limit, retried only through
``connectors.errors.call_with_retries`` (so the one classifier decides), and an expired credential is
refreshed once (``refresh``) and the call repeated. Retries are logged with the vendor, the call and
the reason, never a payload or a secret. Hooks let a vendor add what is its own (Salesforce's
login and its daily-limit awareness) without writing the loop again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ClassVar, TypeVar

from billbridge.connectors.errors import Classified, RetryPolicy, call_with_retries
from billbridge.connectors.pacing import Pacer

T = TypeVar("T")
DEFAULT_POLICY = RetryPolicy()


class VendorClient:
    """Base of the vendor clients: ``call(fn)`` runs ``fn`` counted, paced, retried and refreshed."""

    vendor: ClassVar[str]

    def __init__(
        self,
        *,
        policy: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.policy = policy or DEFAULT_POLICY
        self.pacer = pacer
        self._sleep = sleep or time.sleep
        self.calls = 0  # HTTP attempts sent through ``call`` (retries included)
        self._count_lock = threading.Lock()

    # Hooks a vendor overrides --------------------------------------------------------------------

    def classify(self, exc: BaseException) -> Classified | None:
        """The vendor's classifier (``connectors.errors``): what its SDK's exceptions mean."""
        raise NotImplementedError

    @property
    def can_refresh(self) -> bool:
        """Whether an AUTH failure may be healed by ``refresh`` (then the call is repeated once)."""
        return False

    def refresh(self) -> None:
        """Get a new credential (and rebuild what holds the old one)."""
        raise NotImplementedError

    def before_attempt(self, pacer: Pacer | None) -> None:
        """Right before an attempt is sent: wait for a slot of ``pacer`` (the client's by default)."""
        if pacer is not None:
            pacer.wait()

    # The call --------------------------------------------------------------------------------------

    def count(self) -> None:
        with self._count_lock:
            self.calls += 1

    def call(self, fn: Callable[[], T], *, what: str = "call", pacer: Pacer | None = None, refresh: bool = True) -> T:
        """Run one vendor call: counted, paced (``pacer`` or the client's), retried as the classifier
        says, refreshed once on an expired credential (unless ``refresh`` is False: the refresh itself)."""

        def attempt() -> T:
            self.before_attempt(pacer or self.pacer)
            self.count()
            return fn()

        return self.retried(attempt, what=what, refresh=refresh)

    def retried(self, fn: Callable[[], T], *, what: str = "call", refresh: bool = True) -> T:
        """``fn`` through the retry loop alone (no counting, no pacing): a token endpoint's call."""
        return call_with_retries(
            self.vendor,
            fn,
            self.classify,
            policy=self.policy,
            refresh=self.refresh if refresh and self.can_refresh else None,
            sleep=self._sleep,
            what=what,
        )
