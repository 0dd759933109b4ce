"""prefect.yaml names real flows: every deployment's entrypoint imports and is a Prefect flow whose
parameters exist."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml
from prefect import Flow

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def test_every_deployment_points_at_a_flow_with_those_parameters() -> None:
    config = yaml.safe_load(PREFECT_YAML.read_text())
    deployments = config["deployments"]
    assert {d["name"] for d in deployments} >= {
        "sync-salesforce",
        "sync-hubspot",
        "sync-stripe",
        "bill-daily",
        "push-quickbooks",
    }
    for deployment in deployments:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert isinstance(flow, Flow), deployment["name"]
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters", {})) <= accepted, deployment["name"]
    intervals = {d["name"]: d["schedules"][0].get("interval") for d in deployments if d.get("schedules")}
    assert intervals["sync-salesforce"] == intervals["sync-hubspot"] == intervals["sync-stripe"] == 900  # 15 minutes
    stripe = next(d for d in deployments if d["name"] == "sync-stripe")
    assert stripe["parameters"] == {"source": "stripe"}
