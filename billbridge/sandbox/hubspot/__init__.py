"""HubSpot CRM sandbox: a seeded in-memory portal served over plain http on loopback.

``HubSpotSandbox.start(world)`` renders a ``demo_world.DemoWorld`` into HubSpot records, serves them
and returns the running sandbox; ``url`` and ``credentials`` are what a connector needs, ``apply``
brings a later world state (``demo_world.changed``) in as edits and archivals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from types import TracebackType

from billbridge.sandbox.demo_world import DemoWorld
from billbridge.sandbox.faults import FaultInjector
from billbridge.sandbox.hubspot.app import (
    ASSOCIATIONS_PAGE,
    SEARCH_RATE_PER_SECOND,
    SEARCH_RESULT_CAP,
    TOKEN_TTL_SECONDS,
    Credentials,
    HubSpotErrors,
    TokenBook,
    create_app,
    new_credentials,
    wrap,
)
from billbridge.sandbox.hubspot.records import HubSpotData, apply, render
from billbridge.sandbox.server import SandboxServer

__all__ = ["Credentials", "HubSpotErrors", "HubSpotSandbox", "HubSpotData", "render", "apply"]


class HubSpotSandbox:
    """A running HubSpot sandbox: its data, tokens, fault injector and server."""

    def __init__(
        self,
        world: DemoWorld,
        *,
        search_cap: int = SEARCH_RESULT_CAP,
        token_ttl_seconds: float = TOKEN_TTL_SECONDS,
        clock: Callable[[], float] | None = None,
        associations_page: int = ASSOCIATIONS_PAGE,
        search_rate_per_second: int | None = SEARCH_RATE_PER_SECOND,
    ) -> None:
        self.world = world
        self.data: HubSpotData = render(world)
        self.tokens = TokenBook(new_credentials(), token_ttl_seconds)
        if clock is not None:
            self.tokens.clock = clock
        self.credentials: Credentials = replace(self.tokens.credentials, access_token=self.tokens.issue())
        self.faults = FaultInjector()
        self.app = create_app(
            self.data,
            self.tokens,
            search_cap=search_cap,
            associations_page=associations_page,
            search_rate_per_second=search_rate_per_second,
        )
        self.server = SandboxServer(wrap(self.app, self.faults), name="hubspot")
        self._running = False

    @classmethod
    def start(
        cls,
        world: DemoWorld,
        *,
        search_cap: int = SEARCH_RESULT_CAP,
        token_ttl_seconds: float = TOKEN_TTL_SECONDS,
        clock: Callable[[], float] | None = None,
        associations_page: int = ASSOCIATIONS_PAGE,
        search_rate_per_second: int | None = SEARCH_RATE_PER_SECOND,
    ) -> HubSpotSandbox:
        """Render ``world`` and serve it; stop() (or use as a context manager) when done."""
        sandbox = cls(
            world,
            search_cap=search_cap,
            token_ttl_seconds=token_ttl_seconds,
            clock=clock,
            associations_page=associations_page,
            search_rate_per_second=search_rate_per_second,
        )
        sandbox.server.start()
        sandbox._running = True
        return sandbox

    @property
    def url(self) -> str:
        return self.server.url

    def env(self) -> dict[str, str]:
        """BILLBRIDGE_HUBSPOT__* variables that point ``connectors.hubspot.connect`` at this sandbox."""
        creds = self.credentials
        return {
            "BILLBRIDGE_HUBSPOT__HOST": self.url,
            "BILLBRIDGE_HUBSPOT__ACCESS_TOKEN": creds.access_token,
            "BILLBRIDGE_HUBSPOT__CLIENT_ID": creds.client_id,
            "BILLBRIDGE_HUBSPOT__CLIENT_SECRET": creds.client_secret,
            "BILLBRIDGE_HUBSPOT__REFRESH_TOKEN": creds.refresh_token,
        }

    def apply(self, world: DemoWorld) -> int:
        """Edits, closes and archivals of ``world`` (a later state); returns how many deals changed."""
        self.world = world
        return apply(self.data, world)

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> HubSpotSandbox:
        if not self._running:
            self.server.start()
            self._running = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
