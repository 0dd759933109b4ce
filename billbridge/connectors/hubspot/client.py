"""The HubSpot calls billbridge makes, through hubspot-api-client: paced, counted, retried in one place.

The SDK's own urllib3 retries are switched off (``retry=False``): retries happen only in
the shared ``VendorClient.call``. Responses are read raw (``_preload_content=False``) and parsed with
``parse_float=Decimal``, so numbers never pass through binary floats and records stay plain dicts.
On a 401 the OAuth token is refreshed once (``POST /oauth/v1/token``) and the call repeated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from hubspot import HubSpot

from billbridge.connectors.client import VendorClient
from billbridge.connectors.errors import Classified, RetryPolicy
from billbridge.connectors.hubspot.errors import classify_hubspot
from billbridge.connectors.pacing import Pacer
from billbridge.connectors.paging import AfterCursorEach
from billbridge.settings import HubSpotSettings

VENDOR = "hubspot"
BATCH_READ_SIZE = 100  # v3 batch read: at most 100 inputs
ASSOCIATIONS_BATCH_SIZE = 1_000  # v4 associations batch read: at most 1,000 ids
LIST_PAGE_SIZE = 100  # v3 list: at most 100 per page
ASSOCIATION_PAGES = AfterCursorEach()  # v4 associations: each input's links paged by its own cursor
RATE_WINDOW_SECONDS = 10.0

Json = dict[str, Any]
T = TypeVar("T")


def chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class HubSpotClient(VendorClient):
    """One portal's API through the SDK; ``calls`` counts HTTP attempts (retries included)."""

    vendor = VENDOR

    def classify(self, exc: BaseException) -> Classified | None:
        return classify_hubspot(exc)

    def __init__(
        self,
        settings: HubSpotSettings,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            policy=policy or RetryPolicy.of(settings.retry),
            pacer=Pacer(settings.requests_per_10s, RATE_WINDOW_SECONDS),
            sleep=sleep,
        )
        self.settings = settings
        self.search_pacer = Pacer(settings.search_requests_per_second, 1.0)  # search has its own, stricter limit
        self.refreshes = 0
        token = settings.access_token.get_secret_value() if settings.access_token else None
        self._build(token)
        if token is None:
            self.refresh()

    def _build(self, token: str | None) -> None:
        """SDK API objects for ``token`` (each discovery property builds a new client, so they are kept)."""
        sdk = HubSpot(access_token=token, host=self.settings.host.rstrip("/"), retry=False)
        crm = sdk.crm
        self._search = {"deals": crm.deals.search_api}
        self._batch = {
            "line_items": crm.line_items.batch_api,
            "companies": crm.companies.batch_api,
            "products": crm.products.batch_api,
            "deals": crm.deals.batch_api,
            "contacts": crm.contacts.batch_api,
        }
        self._basic = {"deals": crm.deals.basic_api}
        self._associations = crm.associations.v4.batch_api
        self._tokens = sdk.oauth.tokens_api

    @property
    def can_refresh(self) -> bool:
        return self.settings.can_refresh

    def refresh(self) -> None:
        """A new access token from the OAuth refresh token (one attempt; a refusal is fatal)."""
        settings = self.settings
        if not settings.can_refresh:
            raise PermissionError("the HubSpot access token was refused and there is no refresh token")
        assert settings.client_secret is not None and settings.refresh_token is not None
        self.refreshes += 1
        self.before_attempt(self.pacer)
        self.count()
        response = self._tokens.create(
            grant_type="refresh_token",
            client_id=settings.client_id,
            client_secret=settings.client_secret.get_secret_value(),
            refresh_token=settings.refresh_token.get_secret_value(),
            _preload_content=False,
            _request_timeout=settings.timeout_seconds,
        )
        self._build(str(json.loads(response.data)["access_token"]))

    def _call(self, send: Callable[[], Any], what: str) -> Json:
        def parsed() -> Json:
            response = send()
            try:
                body: Json = json.loads(response.data, parse_float=Decimal)
            finally:
                response.release_conn()
            return body

        return self.call(parsed, what=what)

    def _raw(self) -> dict[str, Any]:
        return {"_preload_content": False, "_request_timeout": self.settings.timeout_seconds}

    def search(self, object_type: str, body: Json) -> Json:
        return self._call(partial(self._searched, object_type, body), f"search {object_type}")

    def _searched(self, object_type: str, body: Json) -> Any:
        self.search_pacer.wait()
        return self._search[object_type].do_search(public_object_search_request=body, **self._raw())

    def batch_read(self, object_type: str, ids: list[str], properties: list[str]) -> list[Json]:
        """Objects by id, ``BATCH_READ_SIZE`` per call; ids HubSpot does not know are left out."""
        found: list[Json] = []
        for part in chunks(ids, BATCH_READ_SIZE):
            body = {"inputs": [{"id": i} for i in part], "properties": properties, "propertiesWithHistory": []}
            found += self._call(partial(self._read, object_type, body), f"batch read {object_type}")["results"]
        return found

    # The SDK API objects are looked up at call time: a token refresh replaces them between attempts.
    def _read(self, object_type: str, body: Json) -> Any:
        return self._batch[object_type].read(batch_read_input_simple_public_object_id=body, **self._raw())

    def _linked(self, from_type: str, to_type: str, body: Json) -> Any:
        api = self._associations
        return api.get_page(from_type, to_type, batch_input_public_fetch_associations_batch_request=body, **self._raw())

    def list_page(
        self, object_type: str, *, after: str | None, properties: list[str], archived: bool, limit: int = LIST_PAGE_SIZE
    ) -> Json:
        kwargs: dict[str, Any] = {"limit": limit, "properties": properties, "archived": archived}
        if after:
            kwargs["after"] = after
        return self._call(lambda: self._basic[object_type].get_page(**kwargs, **self._raw()), f"list {object_type}")

    def associations(self, from_type: str, to_type: str, ids: list[str]) -> dict[str, list[str]]:
        """Associated ids per object id (v4 batch read); objects without associations map to []."""
        return {i: [to for to, _ in links] for i, links in self.labelled_associations(from_type, to_type, ids).items()}

    def labelled_associations(
        self, from_type: str, to_type: str, ids: list[str]
    ) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
        """Associated ids per object id with the labels of each link (v4 batch read: a link's
        ``associationTypes`` carry a ``label`` where the portal defined one); objects without
        associations map to []."""
        linked: dict[str, list[tuple[str, tuple[str, ...]]]] = {i: [] for i in ids}

        def round_of(inputs: list[dict[str, str]] | None) -> list[Json]:
            """One round: every input asked, ``ASSOCIATIONS_BATCH_SIZE`` per call."""
            results: list[Json] = []
            first = [{"id": i} for i in ids] if inputs is None else inputs
            for part in chunks(first, ASSOCIATIONS_BATCH_SIZE):
                body = {"inputs": part}
                what = f"associations {from_type}-{to_type}"
                results += self._call(partial(self._linked, from_type, to_type, body), what)["results"]
            return results

        for results in ASSOCIATION_PAGES.pages(round_of):  # each input's links come in pages
            for result in results:
                linked[str(result["from"]["id"])] += [
                    (
                        str(t["toObjectId"]),
                        tuple(str(a["label"]) for a in t.get("associationTypes") or [] if a.get("label")),
                    )
                    for t in result["to"]
                ]
        return linked
