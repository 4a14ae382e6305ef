"""Find, read and validate the configuration file; the only place that handles raw YAML.

Every problem is collected and reported at once, one line each, as
``FILE: jobs.NAME.OPTION: what is wrong``. Defaults come from the JSON Schema and are applied
here, once; everything downstream receives frozen dataclasses.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from molibackup.errors import ConfigError

CONFIG_ENV = "MOLIBACKUP_CONFIG"
CONFIG_NAME = "molibackup.yaml"
SYSTEM_CONFIG = Path("/etc/molibackup") / CONFIG_NAME


@dataclass(frozen=True)
class GlobalSettings:
    loglevel: str = "info"
    logformat: str = "text"
    concurrency: int = 8
    max_attempts: int | None = None
    connect_timeout: int = 10
    read_timeout: int = 60


@dataclass(frozen=True)
class JobConfig:
    """The options every job has; `options` holds the module's own, already validated."""

    name: str
    module: str
    enabled: bool
    dryrun: bool
    source: Path
    options: Mapping[str, Any] = field(repr=False)

    def problem(self, option: str, message: str) -> str:
        """A user-facing line about one option of this job."""
        return f"{self.source}: jobs.{self.name}.{option}: {message}"


@dataclass(frozen=True)
class Config:
    path: Path
    settings: GlobalSettings
    jobs: tuple[JobConfig, ...]

    def job(self, name: str) -> JobConfig | None:
        return next((job for job in self.jobs if job.name == name), None)


# --- finding the file -------------------------------------------------------------------


def candidate_paths(
    env: Mapping[str, str] | None = None, executable: str | None = None
) -> list[Path]:
    """Where the configuration is looked for when no path is given, in order."""
    env = os.environ if env is None else env
    candidates: list[Path] = []
    if env.get(CONFIG_ENV):
        candidates.append(Path(env[CONFIG_ENV]))
    candidates.append(SYSTEM_CONFIG)
    home = env.get("HOME")
    if home:
        candidates.append(Path(home) / "molibackup" / CONFIG_NAME)
    executable = sys.argv[0] if executable is None else executable
    if executable:
        candidates.append(Path(executable).resolve().parent / CONFIG_NAME)
    return candidates


def find_config(explicit: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The configuration file to use: the one given, else the first candidate that exists."""
    if explicit:
        return Path(explicit)
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        # A path named on purpose must exist; falling back to another file would surprise.
        return Path(env[CONFIG_ENV])
    candidates = candidate_paths(env)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        [f"no configuration file found (looked in: {looked}); give one with -c FILE"]
    )


# --- reading ----------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of keeping the last one silently."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first defined at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a configuration file"]) from None
    except PermissionError:
        raise ConfigError(
            [f"{path}: permission denied; the user running molibackup must be able to read it"]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path}: not a text file (invalid UTF-8 at byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read: {exc.strerror}"]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = exc.problem or "malformed YAML"
        raise ConfigError([f"{path}: invalid YAML at {where}: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None


# --- validating -------------------------------------------------------------------------


def packaged_schema() -> dict[str, Any]:
    text = resources.files("molibackup").joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def read_schema(path: Path | None) -> dict[str, Any]:
    if path is None:
        return packaged_schema()
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the schema: {exc.strerror}"]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}: the schema is not valid JSON: {exc}"]) from None
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError([f"{path}: not a valid JSON Schema: {exc.message}"]) from None
    if not isinstance(schema, dict):
        raise ConfigError([f"{path}: the schema must be a JSON object"])
    return schema


_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping of options",
    "array": "a list",
    "null": "empty",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _location(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def _messages_for(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """(location, message) pairs for one schema error, in words a user understands."""
    instance: Any = error.instance
    value: Any = error.validator_value
    where = _location(error.absolute_path)
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    expected = schema.get("x-expected")
    # A secret's value must not reach the log, even when it is the wrong type.
    got = "a value (not shown: it is secret)" if schema.get("writeOnly") else _describe(instance)
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        lines = []
        for key in sorted(set(instance) - set(allowed)):
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            valid = f"; valid options: {', '.join(allowed)}" if not hint else ""
            lines.append((f"{where}.{key}" if error.absolute_path else str(key),
                          f"unknown option{suggestion}{valid}"))
        return lines
    if kind == "required":
        missing = [key for key in value if key not in instance]
        return [(where, f"missing required option '{key}'") for key in missing]
    if kind == "dependencies":
        lines = []
        for key, needed in value.items():
            for other in needed:
                if key in instance and other not in instance:
                    lines.append((where, f"'{key}' is set but '{other}' is missing: "
                                         "give both or neither"))
        return lines
    if kind == "propertyNames":
        return [(where, f"invalid name {got}: must be {expected or 'a valid name'}")]
    if kind == "minProperties":
        if where == "jobs":
            return [(where, "no jobs defined: add at least one job")]
        return [(where, f"must not be empty{f'; expected {expected}' if expected else ''}")]
    if expected and kind in {"type", "pattern", "minimum", "maximum", "maxLength"}:
        return [(where, f"must be {expected}, got {got}")]
    if kind == "type":
        types = value if isinstance(value, list) else [value]
        words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
        return [(where, f"must be {words}, got {got}")]
    if kind == "enum":
        choices = ", ".join(str(choice) for choice in value)
        return [(where, f"must be one of: {choices}; got {got}")]
    if kind == "const":
        return [(where, f"must be {value!r}, got {got}")]
    if kind == "minimum":
        return [(where, f"must be at least {value}, got {got}")]
    if kind == "maximum":
        return [(where, f"must be at most {value}, got {got}")]
    if kind == "minLength":
        return [(where, "must not be empty")]
    if kind == "maxLength":
        return [(where, f"must be at most {value} characters long")]
    return [(where, error.message)]


def _leaf_errors(error: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
    """The specific errors behind an allOf/if-then wrapper, not the wrapper itself."""
    if error.context:
        for sub in error.context:
            yield from _leaf_errors(sub)
    else:
        yield error


def schema_problems(data: Any, schema: Mapping[str, Any], source: Path) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    lines: list[str] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        for leaf in _leaf_errors(error):
            for where, message in _messages_for(leaf):
                line = f"{source}: {where}: {message}"
                if line not in lines:
                    lines.append(line)
    return lines


def _apply_defaults(data: dict[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    filled = dict(data)
    for key, spec in properties.items():
        if key not in filled and isinstance(spec, dict) and "default" in spec:
            filled[key] = spec["default"]
    return filled


def _module_properties(schema: Mapping[str, Any], module: str) -> Mapping[str, Any]:
    definition = schema.get("definitions", {}).get(module, {})
    properties: Mapping[str, Any] = definition.get("properties", {})
    return properties


def build_config(data: Any, schema: Mapping[str, Any], source: Path) -> Config:
    """Validate raw YAML data and turn it into a typed Config (raises ConfigError)."""
    if data is None:
        raise ConfigError([f"{source}: the file is empty; it needs a 'jobs' section"])
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{source}: must be a mapping with 'global' and 'jobs' sections, "
             f"got {_describe(data)}"]
        )
    problems = schema_problems(data, schema, source)
    if problems:
        raise ConfigError(problems)

    # Defaults are part of this version's contract: they come from the packaged schema even
    # when another copy was given to validate against.
    defaults = packaged_schema()
    global_properties = defaults["properties"]["global"]["properties"]
    raw_global = _apply_defaults(data.get("global") or {}, global_properties)
    settings = GlobalSettings(
        loglevel=raw_global["loglevel"],
        logformat=raw_global["logformat"],
        concurrency=raw_global["concurrency"],
        max_attempts=raw_global.get("max_attempts"),
        connect_timeout=raw_global["connect_timeout"],
        read_timeout=raw_global["read_timeout"],
    )
    jobs = []
    for name, raw_job in data["jobs"].items():
        job = _apply_defaults(raw_job, _module_properties(defaults, raw_job["module"]))
        jobs.append(JobConfig(name=str(name), module=job.pop("module"),
                              enabled=job.pop("enabled", True), dryrun=job.pop("dryrun", False),
                              source=source, options=job))
    return Config(path=source, settings=settings, jobs=tuple(jobs))


def load(path: Path, schema_path: Path | None = None) -> Config:
    """Read and validate one configuration file."""
    schema = read_schema(schema_path)
    return build_config(read_yaml(path), schema, path)


def secrets_of(config: Config) -> list[str]:
    """Values that must never appear in a log line."""
    return [
        str(job.options["accesskey_secret"])
        for job in config.jobs
        if "accesskey_secret" in job.options
    ]
