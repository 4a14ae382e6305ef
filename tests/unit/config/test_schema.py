"""The JSON Schema is the contract: valid, complete, and the single source of truth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from molibackup.config import packaged_schema
from molibackup.ebs.job import MODULE

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_FILE = ROOT / "schema" / "molibackup.schema.json"


def load() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def objects(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path, node
        for key, value in node.items():
            yield from objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from objects(value, f"{path}/{index}")


def test_the_schema_is_a_valid_draft_07_schema() -> None:
    schema = load()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)


@pytest.mark.parametrize("copy", ["src/molibackup/schema.json",
                                  "chart/files/molibackup.schema.json"])
def test_the_packaged_and_chart_schemas_are_the_one_schema_file(copy: str) -> None:
    path = ROOT / copy
    assert path.is_symlink(), f"{copy} must link to schema/molibackup.schema.json"
    assert path.resolve() == SCHEMA_FILE.resolve()
    assert path.read_bytes() == SCHEMA_FILE.read_bytes()


def test_the_package_reads_the_one_schema() -> None:
    assert packaged_schema() == load()


def test_the_one_module_the_code_runs_is_the_one_the_schema_admits() -> None:
    schema = load()
    assert schema["definitions"]["module"]["enum"] == [MODULE]
    assert MODULE in schema["definitions"], f"module {MODULE} has no options schema"


def test_every_option_has_a_description() -> None:
    for path, node in objects(load()):
        for name, spec in node.get("properties", {}).items():
            if "$ref" in spec:
                continue
            assert spec.get("description"), f"{path}/properties/{name} has no description"


def test_every_object_with_options_refuses_unknown_ones() -> None:
    for path, node in objects(load()):
        if "properties" in node and path != "#/definitions/job":
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
