"""Salesforce connection settings: the real service or the sandbox, chosen by settings alone."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SalesforceSettings(BaseSettings):
    """How to reach one Salesforce org (environment: BILLBRIDGE_SALESFORCE_*).

    Sessions come from the org's OAuth token endpoint: the client-credentials flow with a
    connected app's client id and secret, or the username-password flow when a username is set.
    """

    model_config = SettingsConfigDict(env_prefix="BILLBRIDGE_SALESFORCE_", extra="ignore")

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

    @model_validator(mode="after")
    def _password_with_username(self) -> SalesforceSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("the username-password flow needs both username and password")
        return self

    @property
    def token_url(self) -> str:
        return f"{self.instance_url.rstrip('/')}/services/oauth2/token"
