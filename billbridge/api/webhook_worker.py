"""One background thread per API process that acts on stored webhook events after they are answered.

Deliveries only wake it; it waits a moment for the rest of a burst, then runs one processing pass
(``flows.webhooks.process_pending``) for everything stored so far. Wakes during a pass cause one
more pass after it, never one per delivery. Failed events are retried by the scheduled sweep
(``billbridge webhooks process`` / the process-webhooks deployment), not here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

SETTLE_SECONDS = 0.2  # Stripe sends an invoice payment as four events within milliseconds

log = logging.getLogger(__name__)


class WebhookWorker:
    def __init__(self, process: Callable[[], object], *, settle: float = SETTLE_SECONDS) -> None:
        self._process = process
        self._settle = settle
        self._state = threading.Condition()
        self._wanted = False
        self._busy = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.passes = 0

    def wake(self) -> None:
        """Ask for a pass soon (cheap; call it after answering a delivery that stored something new)."""
        with self._state:
            if self._stopped:
                return
            self._wanted = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhook-worker", daemon=True)
                self._thread.start()
            self._state.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no pass is running or asked for (False after ``timeout`` seconds)."""
        with self._state:
            return self._state.wait_for(lambda: not self._wanted and not self._busy, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        with self._state:
            self._stopped = True
            self._state.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._state:
                self._state.wait_for(lambda: self._wanted or self._stopped)
                if self._stopped:
                    return
            # Let the rest of a burst land first (a stop cuts the wait short).
            with self._state:
                self._state.wait_for(lambda: self._stopped, self._settle)
                if self._stopped:
                    return
                self._wanted, self._busy = False, True
            try:
                self._process()
            except Exception:  # the thread must survive; the events stay stored for the next pass or the sweep
                log.exception("processing webhook events failed")
            finally:
                with self._state:
                    self._busy = False
                    self.passes += 1
                    self._state.notify_all()
