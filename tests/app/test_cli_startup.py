"""`billbridge --help` starts fast: the CLI loads the flows (Prefect) and the vendor SDKs only when
a command runs, not when typer reads the commands' signatures (issue 20)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("quickbooks", "intuitlib.client", "stripe", "simple_salesforce", "hubspot", "prefect")
"""The vendor SDKs (``intuitlib`` itself is a namespace stub its ``.pth`` file loads at start-up,
so its client module stands for it) and Prefect."""


def loaded_after(statement: str) -> list[str]:
    """The HEAVY modules a fresh interpreter holds after running ``statement``."""
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_no_vendor_sdk_and_no_prefect() -> None:
    assert loaded_after("import billbridge.app.cli") == []


def test_help_loads_no_vendor_sdk_and_no_prefect() -> None:
    statement = (
        "from typer.testing import CliRunner\n"
        "from billbridge.app.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0 and 'partners' in result.output, result.output\n"
        "result = CliRunner().invoke(app, ['partners', 'run', '--help'])\n"
        "assert result.exit_code == 0 and '--period' in result.output, result.output"
    )
    assert loaded_after(statement) == []


def test_a_command_still_finds_its_flow() -> None:
    """The probe sees a module when it is loaded: the flows a command imports at its call bring the SDK."""
    assert "quickbooks" in loaded_after("import billbridge.flows.partner_fees")
