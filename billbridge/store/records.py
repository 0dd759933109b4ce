"""Small shared vocabulary of the repository functions."""

from __future__ import annotations

from typing import Literal

Outcome = Literal["created", "updated", "unchanged"]
