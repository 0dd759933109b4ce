"""Settings, one tree for everything: environment variables (BILLBRIDGE_*; a vendor's keys as
BILLBRIDGE_<VENDOR>__<KEY>) over a Prefect Secret block (when ``BILLBRIDGE_SECRET_BLOCK`` names one)
over a TOML config file over defaults. Every vendor's connection is a sub-model here
(``salesforce``, ``hubspot``, ``quickbooks``, ``stripe``), read the same way.

A leaf: this module imports nothing of billbridge's domain (billing, mapping, connectors, store,
flows, app, api), so any layer may read settings without importing the others. The few defaults
that echo a domain constant are spelled here and checked against it by a test.

The config file is ``billbridge.toml`` in the working directory, or the path in BILLBRIDGE_CONFIG;
``billbridge.example.toml`` at the top of the checkout documents every key.
"""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from billbridge.errors import NotConfigured
from billbridge.private_files import private_folder

M = TypeVar("M", bound=BaseModel)
CHECKOUT = Path(__file__).resolve().parents[1]

# Defaults echoing domain constants (tests/test_settings_leaf.py keeps them equal): billing.matching's
# MATCH_WINDOW_DAYS and mapping.crm's EARLIEST_DATE / LATEST_DATE.
MATCH_WINDOW_DAYS = 60
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)


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


HUBSPOT_API = "https://api.hubapi.com"
PRICE_CURRENCIES = ("usd", "eur", "gbp", "jpy", "cad", "aud", "chf", "sek", "nok", "dkk")
DEFAULT_REQUESTS_PER_10S = 100  # HubSpot's lowest published tier (100-190 per rolling 10 seconds)
# The CRM search endpoints have their own limit per token (HubSpot's changelog: 4 a second; its usage
# guide now says 5): 4 stays under both.
DEFAULT_SEARCHES_PER_SECOND = 4


class RetrySettings(BaseModel):
    """How a vendor's failed calls are retried (``[<vendor>.retry]``, BILLBRIDGE_<VENDOR>__RETRY__*):
    what may be retried (a 429, a 5xx, a lost connection) is, up to ``attempts`` calls in all, after a
    random wait of at most ``base_delay`` x 2^(attempt-1) seconds, capped at ``max_delay``; a wait the
    vendor asks for (Retry-After) is the least."""

    attempts: int = Field(default=6, ge=1, le=20, description="Calls in all, the first included")
    base_delay: float = Field(default=0.5, ge=0, le=60, description="Seconds: the first retry's longest wait")
    max_delay: float = Field(default=30.0, ge=0, le=600, description="Seconds: no wait is longer")


class VendorSettings(BaseModel):
    """What every vendor's settings have: how its calls are retried."""

    retry: RetrySettings = Field(default_factory=RetrySettings, description="How failed calls are retried")


class SalesforceSettings(VendorSettings):
    """How to reach one Salesforce org (``[salesforce]``, BILLBRIDGE_SALESFORCE__*).

    Sessions come from the org's OAuth token endpoint: the client-credentials flow with a
    connected app's client id and secret, or the username-password flow when a username is set.
    """

    instance_url: str = Field(description="The org's My Domain URL, e.g. https://acme.my.salesforce.com")
    client_id: str = Field(description="Connected app consumer key")
    client_secret: SecretStr = Field(description="Connected app consumer secret")
    username: str | None = Field(default=None, description="Username-password flow: the integration user")
    password: SecretStr | None = Field(default=None, description="Username-password flow: password + security token")
    api_version: str = Field(default="62.0", pattern=r"^\d{2,3}\.0$", description="REST API version")
    ca_bundle: Path | None = Field(
        default=None, description="CA certificate to trust (the sandbox's); None: system CAs"
    )
    timeout_seconds: float = Field(default=60.0, gt=0, description="Per-request timeout")
    batch_size: int = Field(default=2000, ge=200, le=2000, description="Sforce-Query-Options batchSize")
    billing_contact_role: str = Field(
        default="Billing", description="Contact role (on the Opportunity, else its Account) of billing contacts"
    )
    account_contact_roles: bool = Field(
        default=False,
        description="Also read the Accounts' contact roles (AccountContactRole, one more query per page): "
        "billing contacts of the Account where the Opportunity names none",
    )
    referral_partner_field: str | None = Field(
        default=None,
        description="Opportunity lookup to the referral partner's Account (PartnerAccountId with Partner "
        "Relationship Management, or a custom lookup); none: no referral partners from Salesforce",
    )
    reseller_partner_field: str | None = Field(
        default=None, description="Opportunity lookup to the reseller's Account; none: no resellers from Salesforce"
    )

    @model_validator(mode="after")
    def _password_with_username(self) -> SalesforceSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("the username-password flow needs both username and password")
        return self

    @property
    def token_url(self) -> str:
        return f"{self.instance_url.rstrip('/')}/services/oauth2/token"


class HubSpotSettings(VendorSettings):
    """One HubSpot portal (``[hubspot]``, BILLBRIDGE_HUBSPOT__*).

    Either a private-app ``access_token`` (it does not expire) or an OAuth app's ``client_id``,
    ``client_secret`` and ``refresh_token`` (access tokens are then fetched and refreshed as needed).
    The property lists say what each object read asks for; they must cover the installation's mapping.
    """

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
    company_properties: list[str] = Field(default_factory=lambda: ["name", "domain", "legal_entity", "billing_email"])
    billing_contact_label: str | None = Field(
        default="Billing contact",
        description="Association label of the contacts (on the deal, else its company) who receive billing "
        "messages; empty: contacts are not read",
    )
    contact_properties: list[str] = Field(default_factory=lambda: ["email", "firstname", "lastname", "hs_language"])
    referral_partner_label: str | None = Field(
        default="Referral partner",
        description="Deal-to-company association label naming the deal's referral partner; empty: not read",
    )
    reseller_label: str | None = Field(
        default="Reseller", description="Deal-to-company association label naming the deal's reseller; empty: not read"
    )
    product_properties: list[str] = Field(
        default_factory=lambda: [
            "name",
            "hs_sku",
            "price",
            "charge_type",
            "usage_aggregation",
            "revenue_recognition",
            *(f"hs_price_{c}" for c in PRICE_CURRENCIES),
            *(f"pricing_json_{c}" for c in PRICE_CURRENCIES),
        ]
    )

    @model_validator(mode="after")
    def _has_credential(self) -> HubSpotSettings:
        if self.access_token is None and not self.can_refresh:
            raise ValueError(HUBSPOT_NOT_CONFIGURED)
        return self

    @property
    def can_refresh(self) -> bool:
        return bool(self.client_id and self.client_secret and self.refresh_token)


HUBSPOT_NOT_CONFIGURED = (
    "HubSpot is not configured: set access_token (BILLBRIDGE_HUBSPOT__ACCESS_TOKEN, a private app's token) "
    "or client_id, client_secret and refresh_token (an OAuth app)"
)


class QuickBooksSettings(VendorSettings):
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
    # Unset: Intuit's limits since 2025, 10 requests a second per realm and 120 batch calls a minute.
    requests_per_second: int | None = None
    batches_per_minute: int | None = None
    webhook_verifier_token: SecretStr | None = Field(
        default=None, description="The app's webhook verifier token (Intuit developer portal, Webhooks)"
    )


class StripeSettings(VendorSettings):
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


# A QuickBooks account Id (the chart of accounts' ``Id``: digits).
AccountId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{1,20}$")]
RecognitionKind = Literal["ratable", "point_in_time", "usage"]


class EntityRevenueAccounts(BaseModel):
    """One legal entity's own revenue accounts, over the company-wide ones (deferred revenue is one
    account for the company: invoices reach it through their items, which entities share)."""

    model_config = ConfigDict(extra="forbid")

    revenue: AccountId | None = None
    contract_asset: AccountId | None = None
    revenue_by_recognition: dict[RecognitionKind, AccountId] = Field(default_factory=dict)
    revenue_by_product: dict[str, AccountId] = Field(default_factory=dict)


class RevenueAccountsSettings(BaseModel):
    """Where recognised revenue is posted in QuickBooks (``[revenue_accounts]``): account Ids of the
    company's chart of accounts, checked against it before anything is posted. Setting it makes invoice
    items post to ``deferred_revenue`` and each closed month post a JournalEntry moving what was
    recognised to revenue."""

    model_config = ConfigDict(extra="forbid")

    deferred_revenue: AccountId = Field(description="Other Current Liability (or Long Term Liability) account")
    contract_asset: AccountId = Field(description="Unbilled receivables: an Other Current Asset (or Other Asset)")
    revenue: AccountId = Field(description="Income account for revenue no product or recognition kind names")
    revenue_by_recognition: dict[RecognitionKind, AccountId] = Field(
        default_factory=dict, description="ratable / point_in_time / usage -> Income account"
    )
    revenue_by_product: dict[str, AccountId] = Field(
        default_factory=dict, description="product_ref -> Income account (before the recognition kind's)"
    )
    entities: dict[str, EntityRevenueAccounts] = Field(
        default_factory=dict, description="entity_ref -> that entity's own accounts over these"
    )
    pass_through: AccountId | None = Field(
        default=None,
        description="Account the lines of `recognition: none` (pass-through) post to, through items of their "
        "own, never deferred revenue: Income or a liability; unset: each product's revenue account "
        "(revenue_by_product, else revenue)",
    )

    @model_validator(mode="after")
    def _pass_through_apart(self) -> RevenueAccountsSettings:
        if self.pass_through is not None and self.pass_through == self.deferred_revenue:
            raise ValueError("pass_through is the deferred_revenue account: pass-through lines would stay there")
        return self

    def pass_through_account(self, product_ref: str) -> str:
        """The income account of a product's pass-through item (company-wide: entities share items)."""
        return self.pass_through or self.revenue_by_product.get(product_ref) or self.revenue

    def for_entity(self, entity_ref: str) -> dict[str, Any]:
        """The accounts ``entity_ref`` posts to (its own over the company's), as plain data."""
        own = self.entities.get(entity_ref) or EntityRevenueAccounts()
        return {
            "revenue": own.revenue or self.revenue,
            "deferred_revenue": self.deferred_revenue,
            "contract_asset": own.contract_asset or self.contract_asset,
            "revenue_by_product": {**self.revenue_by_product, **own.revenue_by_product},
            "revenue_by_recognition": {**self.revenue_by_recognition, **own.revenue_by_recognition},
            **({"pass_through": self.pass_through} if self.pass_through is not None else {}),
        }


class SmtpSettings(BaseModel):
    """The SMTP server customer messages go out through (invoice delivery, reminders, receipts, dunning)."""

    host: str = Field(description="SMTP server (submission) host")
    port: int = Field(default=587, ge=1, le=65535, description="587 with STARTTLS, 465 with implicit TLS")
    tls: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (required, not opportunistic), tls (implicit, port 465) or none"
    )
    username: str | None = Field(default=None, description="AUTH user; unset: no AUTH")
    password: SecretStr | None = None
    ca_bundle: Path | None = Field(default=None, description="CA to trust instead of the system's (sandboxes)")
    timeout_seconds: float = Field(default=30.0, gt=0)
    helo_name: str | None = Field(default=None, description="Name given in EHLO; default: this host's name")


# Each vendor's sub-model, by its key in the tree (``[salesforce]``, BILLBRIDGE_SALESFORCE__...).
VENDOR_SETTINGS: dict[str, type[BaseModel]] = {
    "salesforce": SalesforceSettings,
    "hubspot": HubSpotSettings,
    "quickbooks": QuickBooksSettings,
    "stripe": StripeSettings,
    "smtp": SmtpSettings,
}


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
        "unset (default): once a pull has brought 500 deals, when there are two CPUs and the store is not in memory",
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
    salesforce: SalesforceSettings | None = Field(default=None, description="Salesforce org (a CRM source)")
    hubspot: HubSpotSettings | None = Field(default=None, description="HubSpot portal (a CRM source)")
    quickbooks: QuickBooksSettings | None = Field(default=None, description="QuickBooks Online connection")
    stripe: StripeSettings | None = Field(default=None, description="Stripe account")
    revenue_accounts: RevenueAccountsSettings | None = Field(
        default=None,
        description="QuickBooks accounts recognised revenue posts to; unset: no journal entries, invoices to items' "
        "income account",
    )
    smtp: SmtpSettings | None = Field(default=None, description="SMTP server of customer e-mails")
    reminder_stale_days: int = Field(
        default=10,
        ge=0,
        le=365,
        description="A reminder step missed (billbridge was down) is sent late within this many days of its "
        "day; older ones are skipped and reported",
    )
    message_templates_dir: Path | None = Field(
        default=None,
        description="Folder of message templates per entity and language (<entity_ref or default>/<language>/"
        "<kind>.subject|.txt|.html); checked at start; default: the built-in English templates",
    )
    statement_payment_days: int = Field(
        default=30, ge=0, le=3660, description="A statement of account lists the payments of this many days"
    )
    pdf_font: Path | None = Field(
        default=None,
        description="TrueType font of invoice PDFs (any script); default: DejaVu Sans where installed, else Latin-1 core fonts",
    )
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
    ledger: str = Field(
        default="quickbooks",
        description="The accounting ledger: where revenue journal entries post, partner fee Bills go and payments "
        "received elsewhere are mirrored (a vendor whose registry entry has journals or bills)",
    )
    partner_fee_account: str = Field(
        default="Partner fees",
        min_length=1,
        max_length=100,
        description="QuickBooks expense account (by Name) partner fee Bills post to; made when missing",
    )
    partner_fee_rates: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Exchange rates for referral fees on payments in another currency than the agreement's, "
        '"FROM/TO" -> rate (e.g. "EUR/USD" = "1.08"); without one such a payment is quarantined',
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

    @model_validator(mode="after")
    def _fee_rates_readable(self) -> Settings:
        for pair, rate in self.partner_fee_rates.items():
            source, slash, target = pair.partition("/")
            if not slash or len(source.strip()) != 3 or len(target.strip()) != 3:
                raise ValueError(f"partner_fee_rates: {pair!r} is not FROM/TO (e.g. EUR/USD)")
            if not rate.is_finite() or rate <= 0:
                raise ValueError(f"partner_fee_rates: {pair} must be a positive rate, not {rate}")
        return self

    def fee_rates(self) -> dict[tuple[str, str], Decimal]:
        """``partner_fee_rates`` as (from, to) -> rate."""
        out = {}
        for pair, rate in self.partner_fee_rates.items():
            source, _, target = pair.partition("/")
            out[(source.strip().upper(), target.strip().upper())] = rate
        return out

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

    def vendor(self, model: type[M]) -> M:
        """A vendor's settings (``model``: its sub-model of this tree). A vendor not configured at all
        raises the ValidationError saying which keys it needs, named by ``settings_problem`` as the
        file and the environment spell them."""
        name = next(key for key, known in VENDOR_SETTINGS.items() if known is model)
        found = getattr(self, name)
        return found if isinstance(found, model) else model.model_validate({})


# The models whose validation errors ``settings_problem`` explains, by title: the tree, and each
# vendor's sub-model (validated on its own by ``Settings.vendor``) with the key its fields sit under.
SETTINGS_KEYS: dict[str, str] = {
    "Settings": "",
    **{model.__name__: name for name, model in VENDOR_SETTINGS.items()},
}


def settings_problem(exc: ValidationError) -> str | None:
    """One line saying what is wrong with the settings, each one named as the config file and the
    environment spell it (``stripe.api_key``, BILLBRIDGE_STRIPE__API_KEY); None when ``exc`` is not
    about one of the settings models."""
    under = SETTINGS_KEYS.get(exc.title)
    if under is None:
        return None
    prefix = str(Settings.model_config.get("env_prefix") or "")
    nested = str(Settings.model_config.get("env_nested_delimiter") or "__")
    vendor = exc.title.removesuffix("Settings")
    what = f"{vendor} settings" if vendor else "Settings"
    whole, fields = [], []
    for error in exc.errors(include_url=False):
        keys = ([under] if under else []) + [str(part) for part in error["loc"] if isinstance(part, str)]
        message = error["msg"].removeprefix("Value error, ")
        if len(keys) == (1 if under else 0):  # about the settings as a whole: the model's own message says which
            whole.append(message)
            continue
        variable = prefix + nested.join(keys).upper()
        said = "is not set" if error["type"] == "missing" else f"is wrong: {message}"
        fields.append(f"{'.'.join(keys)} ({variable}) {said}")
    return "; ".join(whole + ([f"{what}: {'; '.join(fields)}"] if fields else []))
