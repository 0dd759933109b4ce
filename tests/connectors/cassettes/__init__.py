"""Recorded vendor exchanges (vcrpy cassettes) the fast tier's connector tests replay without a sandbox.

``python -m tests.connectors.record_cassettes`` records them again from the strict sandboxes; the
scenarios recorded and replayed are the same functions (``tests/connectors/scenarios.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import vcr

HERE = Path(__file__).parent
REPLAY_URL = "http://127.0.0.1:9"  # nothing listens there: a request the cassette lacks cannot reach a server


def cassette_vcr(mode: Literal["none", "all"]) -> vcr.VCR:
    """A VCR matching on what the connector sends (method, path, query, body), not on the host and
    port (the sandbox's port is random at recording); credentials are never written down."""
    return vcr.VCR(
        cassette_library_dir=str(HERE),
        record_mode=mode,
        match_on=("method", "path", "query", "body"),
        filter_headers=("authorization", "cookie", "set-cookie", "user-agent", "x-stripe-client-user-agent"),
        decode_compressed_response=True,
    )


def cassette_path(vendor: str, scenario: str) -> str:
    """Where the cassette of ``scenario`` of ``vendor`` lives, relative to this folder."""
    return f"{vendor}/{scenario}.yaml"


def replaying(vendor: str, scenario: str) -> Any:
    """A context in which the scenario's recorded exchanges answer, in order, and anything else fails."""
    return cassette_vcr("none").use_cassette(cassette_path(vendor, scenario), allow_playback_repeats=False)
