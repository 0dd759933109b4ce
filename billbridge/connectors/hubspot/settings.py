"""HubSpot connector settings: where to connect and with which credential (BILLBRIDGE_HUBSPOT_* variables).

Either a private-app ``access_token`` (it does not expire) or an OAuth app's ``client_id``,
``client_secret`` and ``refresh_token`` (access tokens are then fetched and refreshed as needed).
The property lists say what each object read asks for; they must cover the installation's mapping.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

HUBSPOT_API = "https://api.hubapi.com"
PRICE_CURRENCIES = ("usd", "eur", "gbp", "jpy", "cad", "aud", "chf", "sek", "nok", "dkk")
DEFAULT_REQUESTS_PER_10S = 100  # HubSpot's lowest published tier (100-190 per rolling 10 seconds)
# The CRM search endpoints have their own limit per token (HubSpot's changelog: 4 a second; its usage
# guide now says 5): 4 stays under both.
DEFAULT_SEARCHES_PER_SECOND = 4


class HubSpotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLBRIDGE_HUBSPOT_", extra="ignore")

    host: str = Field(default=HUBSPOT_API, description="API base URL (a sandbox URL in tests and the demo)")
    access_token: SecretStr | None = Field(default=None, description="Private app token, or a first OAuth token")
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    requests_per_10s: int = Field(default=DEFAULT_REQUESTS_PER_10S, ge=1, description="Pace under the rate limit")
    search_requests_per_second: int = Field(
        default=DEFAULT_SEARCHES_PER_SECOND, ge=1, description="Pace search calls under their own, stricter limit"
    )
    timeout_seconds: float = Field(default=30.0, gt=0)
    deal_properties: list[str] = Field(
        default_factory=lambda: [
            "dealname",
            "dealstage",
            "pipeline",
            "amount",
            "deal_currency_code",
            "closedate",
            "billing_start_date",
            "billing_end_date",
            "billing_cycle",
            "payment_terms_days",
            "auto_charge",
            "billing_timing",
            "legal_entity",
        ]
    )
    line_item_properties: list[str] = Field(
        default_factory=lambda: [
            "name",
            "hs_product_id",
            "hs_sku",
            "quantity",
            "price",
            "hs_discount_percentage",
            "amount",
            "recurringbillingfrequency",
            "hs_recurring_billing_start_date",
            "hs_recurring_billing_period",
        ]
    )
    company_properties: list[str] = Field(default_factory=lambda: ["name", "domain", "legal_entity"])
    product_properties: list[str] = Field(
        default_factory=lambda: [
            "name",
            "hs_sku",
            "price",
            "charge_type",
            "usage_aggregation",
            *(f"hs_price_{c}" for c in PRICE_CURRENCIES),
            *(f"pricing_json_{c}" for c in PRICE_CURRENCIES),
        ]
    )

    @model_validator(mode="after")
    def _has_credential(self) -> HubSpotSettings:
        oauth = self.client_id and self.client_secret and self.refresh_token
        if self.access_token is None and not oauth:
            raise ValueError(
                "HubSpot is not configured: set access_token (BILLBRIDGE_HUBSPOT_ACCESS_TOKEN, a private app's token) "
                "or client_id, client_secret and refresh_token (an OAuth app)"
            )
        return self

    @property
    def can_refresh(self) -> bool:
        return bool(self.client_id and self.client_secret and self.refresh_token)
