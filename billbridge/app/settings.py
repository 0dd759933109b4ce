"""Settings: environment variables (BILLBRIDGE_*) over a Prefect Secret block (when
``BILLBRIDGE_SECRET_BLOCK`` names one) over a TOML config file over defaults.

The config file is ``billbridge.toml`` in the working directory, or the path in BILLBRIDGE_CONFIG;
``billbridge.example.toml`` at the top of the checkout documents every key.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from billbridge.billing.matching import MATCH_WINDOW_DAYS
from billbridge.connectors.hubspot.settings import HubSpotSettings
from billbridge.connectors.salesforce.settings import SalesforceSettings
from billbridge.errors import NotConfigured
from billbridge.mapping.crm import EARLIEST_DATE, LATEST_DATE
from billbridge.private_files import private_folder

CHECKOUT = Path(__file__).resolve().parents[2]


def _default_data_dir() -> Path:
    """The checkout's data folder when running from one, else ./data."""
    return CHECKOUT / "data" if (CHECKOUT / "pyproject.toml").exists() else Path.cwd() / "data"


def _default_planners() -> int:
    """One planning process per CPU, at most 4: with one writer, more planners only cost memory."""
    return max(1, min(4, os.cpu_count() or 1))


def config_file() -> Path:
    return Path(os.environ.get("BILLBRIDGE_CONFIG", "billbridge.toml"))


SECRET_BLOCK_VARIABLE = "BILLBRIDGE_SECRET_BLOCK"


class PrefectSecretBlock(PydanticBaseSettingsSource):
    """Settings kept in a Prefect Secret block: a JSON object of billbridge settings (credentials,
    typically) named by ``BILLBRIDGE_SECRET_BLOCK``. How a deployment gets its credentials from the
    Prefect server instead of the workers' environment; without the variable nothing is read."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        name = os.environ.get(SECRET_BLOCK_VARIABLE)
        if not name:
            return {}
        from prefect.blocks.system import Secret

        block: Secret[Any] = Secret.load(name, _sync=True)  # type: ignore[call-arg,assignment]
        value = block.get()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, dict):
            raise ValueError(
                f"Prefect Secret block {name!r} ({SECRET_BLOCK_VARIABLE}) must hold a JSON object of settings"
            )
        return value


class QuickBooksSettings(BaseModel):
    """One QuickBooks Online company. ``refresh_token`` seeds the store on first use; after that the
    rotated tokens live (sealed) in the store."""

    client_id: str
    client_secret: SecretStr
    realm_id: str
    refresh_token: SecretStr | None = None
    # Unset: Intuit's production endpoints and published limits (connectors/quickbooks/client.py).
    api_url_v3: str | None = None
    discovery_url: str | None = None
    ca_bundle: str | None = Field(default=None, description="CA to trust instead of the system's (sandboxes)")
    requests_per_minute: int | None = None
    batches_per_minute: int | None = None
    webhook_verifier_token: SecretStr | None = Field(
        default=None, description="The app's webhook verifier token (Intuit developer portal, Webhooks)"
    )


class StripeSettings(BaseModel):
    """One Stripe account (a restricted key with invoices, customers and payments write access). The
    webhook endpoint needs only ``webhook_secret``; whatever calls Stripe asks for ``api_key``."""

    api_key: SecretStr | None = Field(default=None, description="Restricted key (rk_...) or secret key (sk_...)")
    base_url: str | None = Field(default=None, description="Unset: api.stripe.com (a sandbox URL for the demo)")
    webhook_secret: SecretStr | None = Field(
        default=None, description="Signing secret (whsec_...) of the webhook endpoint registered in Stripe"
    )

    def key(self) -> str:
        """The API key, for whatever calls Stripe."""
        if self.api_key is None:
            raise NotConfigured("Stripe's api_key is not set (BILLBRIDGE_STRIPE__API_KEY)")
        return self.api_key.get_secret_value()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLBRIDGE_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir, description="Where the embedded SQLite store lives")
    database_url: str | None = Field(
        default=None, description="Any SQLAlchemy URL; default: SQLite file billbridge.db in data_dir"
    )
    billing_chunk_size: int = Field(default=1000, ge=1, description="Contracts per billing transaction")
    api_host: str = Field(default="127.0.0.1", description="Address `billbridge serve` listens on")
    api_port: int = Field(default=8000, ge=0, le=65535, description="Port `billbridge serve` listens on")
    api_workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes of `billbridge serve`")
    api_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long an API process caches API keys, customer/product ids and contract usage terms "
        "(a new contract is seen within this time; a revoked key is refused at once by the process that revoked "
        "it and by other processes, such as the API after `billbridge apikey revoke`, within this time; 0 = no cache)",
    )
    api_max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body the API reads (larger: 413)"
    )
    crm_sync_writer: bool | None = Field(
        default=None,
        description="Store a CRM sync's pages in a writer process while the next ones are mapped: true, false, or "
        "unset (default): for a full pull or a large page, when there are two CPUs and the store is not in memory",
    )
    crm_earliest_date: date = Field(
        default=EARLIEST_DATE,
        description="CRM deals whose dates (start, end, line dates) fall before this are quarantined as implausible",
    )
    crm_latest_date: date = Field(
        default=LATEST_DATE, description="CRM deals whose dates fall after this are quarantined as implausible"
    )
    match_window_days: int = Field(
        default=MATCH_WINDOW_DAYS,
        ge=0,
        le=3660,
        description="Reconciliation: a payment naming no invoice (linked or written in its reference or memo) "
        "matches a customer's open invoice of exactly its amount only when due within this many days of it",
    )
    billing_workers: int = Field(
        default_factory=_default_planners,
        ge=0,
        description="Processes planning the next chunks while the billing run saves one; 0 plans in the run's own "
        "process; default: one per CPU, at most 4 (planning is the run's bottleneck, the one writer is not)",
    )

    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key sealing the OAuth tokens kept in the store; default: generated into data_dir/secret.key",
    )
    quickbooks: QuickBooksSettings | None = Field(default=None, description="QuickBooks Online connection")
    stripe: StripeSettings | None = Field(default=None, description="Stripe account")
    webhooks_inline: bool = Field(
        default=True,
        description="Act on stored webhook events in the API process right after answering; otherwise only "
        "`billbridge webhooks process` (or the process-webhooks deployment) does",
    )
    auto_approve_invoices: bool = Field(
        default=False,
        description="Approve new drafts after each billing run (and queue their pushes); otherwise a person "
        "approves them (`billbridge invoices mark NUMBER approved`)",
    )
    crm_sources: list[str] = Field(
        default_factory=list,
        description="Contract sources quote_to_cash syncs from: salesforce, hubspot, stripe (subscriptions)",
    )
    push_targets: list[str] = Field(
        default_factory=list, description="Where approved documents go: quickbooks (all), stripe (auto-charge invoices)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            PrefectSecretBlock(settings_cls),
            TomlConfigSettingsSource(settings_cls, toml_file=config_file()),
        )

    @property
    def crm_dates(self) -> tuple[date, date]:
        """The window of plausible CRM dates (``crm_earliest_date`` to ``crm_latest_date``)."""
        return self.crm_earliest_date, self.crm_latest_date

    @property
    def database(self) -> str:
        """The store's URL: ``database_url``, or the embedded SQLite file in ``data_dir``, whose folder is
        made when missing (the only folder billbridge makes by itself: a store elsewhere whose folder
        does not exist is an error, not a new empty business)."""
        if self.database_url:
            return self.database_url
        private_folder(self.data_dir)
        return f"sqlite:///{self.data_dir / 'billbridge.db'}"


SETTINGS_MODELS: dict[str, type[BaseSettings]] = {
    model.__name__: model for model in (Settings, SalesforceSettings, HubSpotSettings)
}


def settings_problem(exc: ValidationError) -> str | None:
    """One line saying what is wrong with the settings, each one named as the config file and the
    environment spell it (``stripe.api_key``, BILLBRIDGE_STRIPE__API_KEY); None when ``exc`` is not
    about one of the settings models."""
    model = SETTINGS_MODELS.get(exc.title)
    if model is None:
        return None
    prefix = str(model.model_config.get("env_prefix") or "")
    nested = str(model.model_config.get("env_nested_delimiter") or "__")
    vendor = exc.title.removesuffix("Settings")
    what = f"{vendor} settings" if vendor else "Settings"
    whole, fields = [], []
    for error in exc.errors(include_url=False):
        keys = [str(part) for part in error["loc"] if isinstance(part, str)]
        message = error["msg"].removeprefix("Value error, ")
        if not keys:  # about the settings as a whole: the model's own message says which
            whole.append(message)
            continue
        variable = prefix + nested.join(keys).upper()
        said = "is not set" if error["type"] == "missing" else f"is wrong: {message}"
        fields.append(f"{'.'.join(keys)} ({variable}) {said}")
    return "; ".join(whole + ([f"{what}: {'; '.join(fields)}"] if fields else []))
