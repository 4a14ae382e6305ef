"""Property-based fuzzing of everything a user can put in a configuration file.

Whatever the input (random bytes, random YAML with explicit tags, random values in every
option), the outcome is exit 0 or exit 1 with one log line per problem: no traceback, a
bounded time, and a planted secret never in the output. And whatever passes --validate runs
without a crash (exit 0, or 2 when AWS refuses something), against the EC2 emulator.

`HYPOTHESIS_PROFILE=long` runs many more examples than `make test` does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from molibackup.config import validation
from tests.conftest import CliRun
from tests.support.fleet import REGION, Fleet

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schema" / "molibackup.schema.json").read_text())
EBS = SCHEMA["definitions"]["ebs-snapshot"]["properties"]
GLOBAL = SCHEMA["properties"]["global"]["properties"]
SECRET = "fuzzSECRET/wJalrXUtnFEMI/K7MDENGbPxRfiCY"
CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR)\s")
COMMON = {"deadline": 5000, "suppress_health_check": [HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow]}

settings.register_profile("default", max_examples=150, **COMMON)  # type: ignore[arg-type]
settings.register_profile("long", max_examples=3000, **COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --- strategies -----------------------------------------------------------------------------

TAGS = ["!!int", "!!float", "!!bool", "!!timestamp", "!!str", "!!null", "!!binary", "!!set",
        "!!omap", "!!pairs", "!!seq", "!!map", "!!python/object:os.system", "!custom", "!"]
OPTION_NAMES = sorted({*EBS, "module", "retension", "x-extra", "<<"})

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from([SECRET, SECRET + "\n", " " + SECRET, "us-west-2\n", "local", "A=b",
                     "ebs-snapshot", "8.0", "1e999", "~", "<<", "*nope", "&a x", "'"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@st.composite
def value_text(draw: st.DrawFn) -> str:
    """A YAML value as a user might write it: plain, flow-dumped, or with an explicit tag."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return f"{draw(st.sampled_from(TAGS))} {draw(st.text(max_size=20))}".replace("\n", " ")
    dumped = yaml.safe_dump(draw(values), default_flow_style=True, width=10**6)
    return dumped.strip().removesuffix("...").strip().replace("\n", " ")


@st.composite
def yaml_documents(draw: st.DrawFn) -> str:
    """Configuration-shaped YAML text with random options, values and tags."""
    lines = []
    if draw(st.booleans()):
        lines.append("global:")
        for key in draw(st.lists(st.sampled_from([*GLOBAL, "colour"]), max_size=4)):
            lines.append(f"  {key}: {draw(value_text())}")
    lines.append("jobs:")
    for index in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([f"job{index}", "bad name", "'x\\n'", "-a", "1" * 70]))
        lines.append(f"  {name}:")
        lines.append(f"    accesskey_secret: {SECRET}")
        for key in draw(st.lists(st.sampled_from(OPTION_NAMES), max_size=8, unique=True)):
            if key != "accesskey_secret":
                lines.append(f"    {key}: {draw(value_text())}")
    return "\n".join(lines) + "\n"


def assert_well_behaved(result: CliRun, written: str = "") -> None:
    assert result.status in (0, 1), result.log
    assert "Traceback" not in result.log
    assert SECRET not in result.log
    fragment = SECRET.split("/")[1]
    if fragment not in written.replace(SECRET, ""):  # unless written alone, as a value
        assert fragment not in result.log
    for line in result.log.splitlines():
        assert LOG_LINE.match(line), f"not one log line per problem: {line!r}"


# --- the loader and the validator -----------------------------------------------------------


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted secret is also the environment's key: a file with no job (so no
    accesskey_secret) may still hold it anywhere, and it must not be written either."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)


@pytest.mark.usefixtures("secret_key")
@given(content=st.binary(max_size=400))
def test_random_bytes_never_crash(
    tmp_path: Path, run_cli: Callable[..., CliRun], content: bytes
) -> None:
    path = tmp_path / "bytes.yaml"
    path.write_bytes(content)
    assert_well_behaved(run_cli("-c", str(path), "--validate"),
                        content.decode("utf-8", "replace"))


@pytest.mark.usefixtures("secret_key")
@given(text=yaml_documents())
def test_random_configurations_never_crash_or_leak(
    tmp_path: Path, run_cli: Callable[..., CliRun], text: str
) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    assert_well_behaved(run_cli("-c", str(path), "--validate"), text)


@pytest.mark.usefixtures("secret_key")
@given(text=yaml_documents(), cut=st.integers(0, 400), noise=st.text(max_size=5))
def test_damaged_configurations_never_crash_or_leak(
    tmp_path: Path, run_cli: Callable[..., CliRun], text: str, cut: int, noise: str
) -> None:
    path = tmp_path / "damaged.yaml"
    path.write_text(text[:cut] + noise + text[cut:], encoding="utf-8")
    assert_well_behaved(run_cli("-c", str(path), "--validate"), text[:cut] + noise + text[cut:])


# --- whatever passes --validate runs -----------------------------------------------------


def strategy_for(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema accepts for one option, read from its own bounds."""
    if "$ref" in spec or "allOf" in spec:
        ref = spec.get("$ref") or spec["allOf"][0]["$ref"]
        return strategy_for(SCHEMA["definitions"][ref.rsplit("/", 1)[1]])
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    kind = spec["type"]
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(spec.get("minimum", -(10**12)), spec.get("maximum", 10**12))
    if kind == "number":
        return st.floats(spec.get("minimum", -(10**12)), spec.get("maximum", 10**12),
                         allow_nan=False, allow_infinity=False)
    # Control characters are refused on top of the schema (see validation.py): not made here.
    if kind == "string" and "pattern" in spec:
        return st.from_regex(validation.ecma_pattern(spec["pattern"]), fullmatch=True).filter(
            lambda text: spec.get("minLength", 0) <= len(text) <= spec.get("maxLength", 10**6)
            and not CONTROL.search(text))
    if kind == "string":
        return st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")),
                       min_size=spec.get("minLength", 0), max_size=30)
    if kind == "array":
        return st.lists(strategy_for(spec["items"]), min_size=spec.get("minItems", 0),
                        max_size=min(spec.get("maxItems", 3), 3))
    if kind == "object" and "properties" in spec:
        optional = {key: strategy_for(value) for key, value in spec["properties"].items()}
        return st.fixed_dictionaries(
            {key: optional.pop(key) for key in spec.get("required", [])}, optional=optional
        ).filter(lambda value: len(value) >= spec.get("minProperties", 0))
    if kind == "object":
        return st.dictionaries(
            st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
            min_size=1, max_size=3)
    raise AssertionError(f"the fuzz suite does not know how to make a {kind} option: teach it")


# Options whose values reach other systems than EC2 are given fixed, reachable values.
FIXED = {"module": "ebs-snapshot", "aws_region": REGION}
LEFT_OUT = {"accesskey_id", "accesskey_secret", "metrics", "ping_url", "role_arn",
            "external_id", "session_name", "copy_to", "accounts", "organization", "aws_regions"}


@st.composite
def valid_jobs(draw: st.DrawFn) -> dict[str, Any]:
    options = dict(FIXED)
    for key, spec in EBS.items():
        if key in FIXED or key in LEFT_OUT or not draw(st.booleans()):
            continue
        options[key] = draw(strategy_for(spec))
    if ("lock_mode" in options) != ("lock_duration" in options):
        options.pop("lock_mode", None)
        options.pop("lock_duration", None)
    return options


@settings(max_examples=25)
@given(options=valid_jobs(), global_settings=st.fixed_dictionaries(
    {}, optional={key: strategy_for(spec) for key, spec in GLOBAL.items()
                  if key not in ("loglevel", "read_timeout", "connect_timeout", "metrics",
                                 "ping_url")}))
def test_whatever_passes_validate_runs(
    fleet: Fleet, tmp_path: Path, run_cli: Callable[..., CliRun],
    options: dict[str, Any], global_settings: dict[str, Any],
) -> None:
    path = tmp_path / "valid.yaml"
    path.write_text(yaml.safe_dump({"global": global_settings, "jobs": {"fuzzed": options}}),
                    encoding="utf-8")
    validated = run_cli("-c", str(path), "--validate")
    if validated.status != 0:
        # What the schema cannot express (a contradiction, an unknown time zone, a duration
        # past its bound) is refused by the module's own parsing: one line each, no crash.
        assert validated.status == 1
        assert "Traceback" not in validated.log
        return
    result = run_cli("-c", str(path), "--dry-run", "--log-format", "json")
    assert result.status in (0, 2), result.log
    assert "Traceback" not in result.log
    assert "unexpected error" not in result.log
