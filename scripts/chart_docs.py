"""Render the chart README's values table from values.yaml and values.schema.json.

`make chart` writes it between the values-table markers of chart/README.md; a test fails
when the README is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "chart"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    merged = dict(node)
    for part in node.get("allOf", []):
        ref = part.get("$ref", "")
        if ref.startswith("#/definitions/"):
            merged = {**schema["definitions"][ref.rsplit("/", 1)[1]], **merged}
    return merged


def rows(schema: dict[str, Any], node: dict[str, Any], values: Any, prefix: str) -> list[str]:
    lines = []
    for key, raw_spec in node.get("properties", {}).items():
        if key == "global":
            continue
        spec = resolve(schema, raw_spec)
        path = f"{prefix}{key}"
        value = values.get(key) if isinstance(values, dict) else None
        nested = spec.get("properties") and spec.get("additionalProperties") is False
        if nested and path != "settings":
            lines += rows(schema, spec, value, f"{path}.")
            continue
        default = json.dumps(value, separators=(", ", ": ")) if value is not None else "null"
        description = spec.get("description", "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{path}` | `{default}` | {description} |")
        if path == "jobs":
            entry = spec["additionalProperties"]
            shared = schema["properties"]["jobDefaults"]["properties"]
            for sub, sub_spec in entry["properties"].items():
                if sub not in shared:
                    text = resolve(schema, sub_spec).get("description", "")
                    required = " (required)" if sub in entry.get("required", []) else ""
                    lines.append(f"| `jobs.<name>.{sub}` | | {text}{required} |")
            lines.append("| `jobs.<name>.<setting>` | | Any `jobDefaults` setting, for this "
                         "job only. |")
    return lines


def render() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    table = ["| value | default | description |", "|---|---|---|",
             *rows(schema, schema, values, "")]
    return "\n".join([START, *table, END])


def main(argv: list[str]) -> int:
    path = CHART / "README.md"
    text = path.read_text(encoding="utf-8")
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    path.write_text(before + render() + after, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
