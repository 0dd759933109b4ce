"""Where the vendors' published definitions are, and a record of contract violations the sandboxes saw.

The specs live in ``shared/vendor-specs`` beside the checkout (``../shared/vendor-specs`` from the
repository root, as CI lays it out), with copies of the HubSpot ones in ``tests/vendor_specs``;
``BILLBRIDGE_VENDOR_SPECS`` overrides the folder. Sandboxes check their traffic against them when
``contracts_enabled()`` (the test suite turns it on): a request a vendor would refuse is refused, and
every violation, of a request or of the sandbox's own answer, is appended to ``VIOLATIONS`` so the
test that caused it fails (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_ENV = "BILLBRIDGE_SANDBOX_CONTRACTS"
VIOLATIONS: list[str] = []
_lock = threading.Lock()


def spec_dirs() -> list[Path]:
    """The folders searched for vendor specs, in order."""
    override = os.environ.get("BILLBRIDGE_VENDOR_SPECS")
    if override:
        return [Path(override)]
    return [REPO_ROOT.parent / "shared" / "vendor-specs", REPO_ROOT / "tests" / "vendor_specs"]


def spec_path(relative: str) -> Path:
    """The first ``<dir>/<relative>`` that exists; FileNotFoundError naming every place looked in."""
    tried = [d / relative for d in spec_dirs()]
    for path in tried:
        if path.exists():
            return path
    raise FileNotFoundError(f"vendor spec {relative} not found in: {', '.join(str(p) for p in tried)}")


def contracts_enabled() -> bool:
    return os.environ.get(CONTRACTS_ENV, "") == "1"


def report(vendor: str, what: str) -> None:
    """Record one violation (thread-safe: sandboxes serve from their own threads)."""
    with _lock:
        VIOLATIONS.append(f"{vendor}: {what}")


def take_violations() -> list[str]:
    with _lock:
        taken = list(VIOLATIONS)
        VIOLATIONS.clear()
    return taken
