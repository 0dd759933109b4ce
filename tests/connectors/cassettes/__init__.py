"""Recorded vendor exchanges (vcrpy cassettes) the fast tier's connector tests replay without a sandbox.

``python -m tests.connectors.record_cassettes`` records them again from the strict sandboxes; the
scenarios recorded and replayed are the same functions (``tests/connectors/scenarios.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import vcr
import vcr.matchers
from vcr.request import Request

HERE = Path(__file__).parent
REPLAY_URL = "http://127.0.0.1:9"  # nothing listens there: a request the cassette lacks cannot reach a server
RECORDED_HOST = "sandbox.invalid"  # what a recorded request's host and random port are written down as
LOOPBACK = re.compile(rb"https?://(?:localhost|127\.0\.0\.1):\d+")
VOLATILE_ANSWER_HEADERS = frozenset({"date", "request-id", "x-request-id", "x-hubspot-correlation-id"})
# Wall-clock moments the sandboxes put in answers even on a fixed clock (HubSpot's batch timings, the
# milliseconds Salesforce's token and delete log add to the world's time): written down as a fixed
# moment of the same shape, so a re-recording changes only what the connector or the sandbox changed.
VOLATILE_MOMENTS = (
    (re.compile(rb'"(startedAt|completedAt)":"[^"]*"'), rb'"\1":"2000-01-01T00:00:00.000Z"'),
    (re.compile(rb'"issued_at": ?"(\d+?)\d{3}"'), rb'"issued_at": "\g<1>000"'),
    (re.compile(rb'("earliestDateAvailable":"[^".]*)\.\d{3}'), rb"\1.000"),
)


def _steady_request(request: Request) -> Request:
    """The request as written down: the sandbox's random port gone, so a re-recording changes only
    what the connector or the sandbox changed."""
    parts = urlsplit(request.uri)
    request.uri = urlunsplit((parts.scheme, RECORDED_HOST, parts.path, parts.query, parts.fragment))
    return request


def _steady_response(response: dict[str, Any]) -> dict[str, Any]:
    """The answer as written down, without the headers that differ at every recording."""
    headers = response.get("headers", {})
    for name in [h for h in headers if h.lower() in VOLATILE_ANSWER_HEADERS]:
        del headers[name]
    body = response.get("body", {}).get("string")
    if isinstance(body, bytes) and b'"access_token"' in body:  # an issued token: written down as a placeholder
        answer = json.loads(body)
        answer.update({k: "filtered" for k in ("access_token", "refresh_token", "signature") if k in answer})
        response["body"]["string"] = json.dumps(answer).encode()
    if isinstance(body := response.get("body", {}).get("string"), bytes):  # URLs naming the sandbox's port
        body = LOOPBACK.sub(f"https://{RECORDED_HOST}".encode(), body)
        for moment, fixed in VOLATILE_MOMENTS:
            body = moment.sub(fixed, body)
        response["body"]["string"] = body
    return response


def request_body(sent: Request, recorded: Request) -> None:
    """vcrpy's body matcher, asked only where the method and path agree: vcrpy asks every matcher
    about every recorded request for each request sent, and its body matcher parses and diffs the two
    bodies when they differ (seconds for a cassette of a few dozen large searches); where the method
    or the path differ, those matchers refuse the request already."""
    if (sent.method, sent.path) == (recorded.method, recorded.path):
        vcr.matchers.body(sent, recorded)


def cassette_vcr(mode: Literal["none", "all"]) -> vcr.VCR:
    """A VCR matching on what the connector sends (method, path, query, body), not on the host and
    port (the sandbox's port is random at recording); credentials are never written down."""
    recorder = vcr.VCR(
        cassette_library_dir=str(HERE),
        record_mode=mode,
        match_on=("method", "path", "query", "body"),
        filter_headers=(
            "authorization",
            "cookie",
            "set-cookie",
            "user-agent",
            "x-stripe-client-user-agent",
            "x-stripe-client-telemetry",
        ),
        filter_post_data_parameters=("client_id", "client_secret", "username", "password", "refresh_token"),
        before_record_request=_steady_request,
        before_record_response=_steady_response,
        decode_compressed_response=True,
    )
    recorder.register_matcher("body", request_body)
    return recorder


def cassette_path(vendor: str, scenario: str) -> str:
    """Where the cassette of ``scenario`` of ``vendor`` lives, relative to this folder."""
    return f"{vendor}/{scenario}.yaml"


def replaying(vendor: str, scenario: str) -> Any:
    """A context in which the scenario's recorded exchanges answer, in order, and anything else fails."""
    return cassette_vcr("none").use_cassette(cassette_path(vendor, scenario), allow_playback_repeats=False)
