"""The replay refuses what was not recorded: a request whose body differs from the recorded one (the
same method and path) finds no answer, so a connector change that alters a request fails loudly."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from vcr.errors import CannotOverwriteExistingCassetteException

from tests.connectors.cassettes import REPLAY_URL, replaying


def _first_post(cassette: Any) -> tuple[str, bytes]:
    """The path and body of the cassette's first POST with a body."""
    recorded = next(r for r in cassette.requests if r.method == "POST" and r.body)
    return urlsplit(recorded.uri).path, recorded.body


def test_a_recorded_request_is_answered_and_a_changed_body_is_refused() -> None:
    with replaying("stripe", "customers_send_void") as cassette:
        path, body = _first_post(cassette)
        changed = body.replace(b"Globex", b"Globes")
        assert changed != body
        with pytest.raises(CannotOverwriteExistingCassetteException):
            requests.post(
                f"{REPLAY_URL}{path}", data=changed, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
        answer = requests.post(
            f"{REPLAY_URL}{path}", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert answer.status_code == 200 and answer.json()["object"] == "customer"
