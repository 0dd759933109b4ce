"""billbridge.example.toml documents every setting, and what it says loads."""

from __future__ import annotations

import os
import re
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from billbridge.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "billbridge.example.toml"
COMMENTED_KEY = re.compile(r"^# (\[[a-z_]+\]|[a-z_0-9]+ = .*)$")


def uncommented(text: str) -> str:
    """The example with every commented-out key and table put in, as a person would."""
    return "\n".join(m.group(1) if (m := COMMENTED_KEY.match(line)) else line for line in text.splitlines())


def nested_model(annotation: object) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("BILLBRIDGE_") and not k.startswith("BILLBRIDGE_TEST_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))


def test_the_example_loads_as_shipped_and_with_every_key_put_in(
    no_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(EXAMPLE))
    assert Settings().billing_chunk_size == 1000  # as shipped every key is commented out: the defaults

    values = tomllib.loads(uncommented(EXAMPLE.read_text()))
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(EXAMPLE.with_name("not-there.toml")))
    settings = Settings(**values)  # every example value is a valid one
    assert settings.stripe is not None and settings.quickbooks is not None
    assert settings.crm_sources == ["salesforce", "hubspot"] and settings.database.startswith("postgresql://")


def test_the_example_documents_every_setting_nested_ones_too() -> None:
    text = EXAMPLE.read_text()
    values = tomllib.loads(uncommented(text))
    assert set(values) == set(Settings.model_fields), "keys in the example that are not settings, or missing"
    for name, field in Settings.model_fields.items():
        if (model := nested_model(field.annotation)) is not None:
            assert set(values[name]) == set(model.model_fields), f"[{name}]"


def test_the_readme_configuration_table_is_one_table_naming_every_setting() -> None:
    readme = (EXAMPLE.with_name("README.md")).read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| key |"))
    table = []
    for line in lines[start:]:  # a blank line would end the table there (Markdown shows the rest as text)
        if not line.startswith("|"):
            break
        table.append(line)
    named = {name for row in table for name in re.findall(r"`([a-z_]+)(?:\.\*)?`", row.split("|")[1])}
    assert set(Settings.model_fields) <= named, sorted(set(Settings.model_fields) - named)
