"""Finance metrics, pure: recurring revenue and its movements, contract values, billing and
collections, the cash forecast, product allocation and usage and cash. Every figure is per legal
entity and currency; nothing sums across currencies. The store feeds them (``store/metrics.py``);
the CLI, the API and the dashboard show what they compute."""

from __future__ import annotations

from billbridge.billing.metrics.recurring import arr, in_force, mrr

__all__ = ["arr", "in_force", "mrr"]
