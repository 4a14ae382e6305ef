"""Render the configuration reference (Markdown tables) from the JSON Schema.

`python scripts/config_reference.py` prints it; `--write docs/reference/configuration.md`
replaces the part of that page between the config-reference markers. A test fails when the
page is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import readme_sections

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schema" / "molibackup.schema.json"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The option's own keys merged over what it references (allOf of one $ref)."""
    merged = dict(spec)
    for ref in [spec.get("$ref"), *[p.get("$ref") for p in spec.get("allOf", [])]]:
        if ref:
            target = schema
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            merged = {**resolve(schema, target), **merged}
    merged.pop("$ref", None)
    merged.pop("allOf", None)
    return merged


def kind(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    words = {"integer": "integer", "string": "string", "boolean": "boolean",
             "object": "map of string to string"}
    kinds = spec.get("type", "")
    kinds = next(k for k in kinds if k != "null") if isinstance(kinds, list) else kinds
    if kinds == "object" and "properties" in spec:
        return "mapping"
    text = words.get(kinds, kinds)
    if kinds == "string" and spec.get("pattern", "").startswith("^https?"):
        text = "URL"
    bounds = []
    if "minimum" in spec:
        bounds.append(f"≥ {spec['minimum']}")
    if "maximum" in spec:
        bounds.append(f"≤ {spec['maximum']}")
    return f"{text} {', '.join(bounds)}".strip()


def table(schema: dict[str, Any], properties: dict[str, Any], required: list[str],
          prefix: str = "") -> list[str]:
    rows = ["| option | type | default | description |", "|---|---|---|---|"] if not prefix \
        else []
    for short, raw in properties.items():
        name = prefix + short
        spec = resolve(schema, raw)
        if name in required:
            default = "**required**"
        elif "x-default-text" in spec:
            default = spec["x-default-text"]
        elif "default" in spec:
            default = f"`{json.dumps(spec['default'])}`"
        else:
            default = "—"
        description = spec.get("description", "").replace("|", "\\|")
        if default == "`{}`":
            default = "—"
        rows.append(f"| `{name}` | {kind(spec)} | {default} | {description} |")
        if "properties" in spec:
            rows += table(schema, spec["properties"], spec.get("required", []), f"{name}.")
    return rows


def render() -> str:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    glob = schema["properties"]["global"]
    module = schema["definitions"]["ebs-snapshot"]
    lines = [START, "", "### `global`", ""]
    lines += table(schema, glob["properties"], glob.get("required", []))
    lines += ["", "### Jobs of `module: ebs-snapshot`", ""]
    lines += table(schema, module["properties"], module.get("required", []))
    lines += ["", END]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    return readme_sections.main(render, START, END, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
