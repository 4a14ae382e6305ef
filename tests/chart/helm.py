"""Rendering the chart with Helm's own engine (helm-python-sdk), offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import yaml

CHART = Path(__file__).resolve().parents[2] / "chart"


def web_job(**overrides: Any) -> dict[str, Any]:
    config = {"module": "ebs-snapshot", "aws_region": "us-west-2", "retention": 30,
              "instance_tags": {"Backup": "daily"}}
    return {"schedule": "0 4 * * *", "config": config, **overrides}


def render_files(values: dict[str, Any], name: str = "rel",
                 namespace: str = "backup") -> dict[str, str]:
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        return chart.render(values, name=name, namespace=namespace)


def render(values: dict[str, Any], name: str = "rel", namespace: str = "backup",
           ) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for these values."""
    objects = []
    for path, text in render_files(values, name, namespace).items():
        if path.endswith("NOTES.txt"):
            continue
        objects += [obj for obj in yaml.safe_load_all(text) if obj]
    return objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def notes(values: dict[str, Any], name: str = "rel") -> str:
    return next(text for path, text in render_files(values, name).items()
                if path.endswith("NOTES.txt"))
