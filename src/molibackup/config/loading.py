"""Find, read and validate the configuration file; the only place that handles raw YAML.

Every problem is collected and reported at once, one line each, as
``FILE: jobs.NAME.OPTION: what is wrong``. Defaults come from the JSON Schema and are applied
here, once; everything downstream receives frozen dataclasses.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from molibackup import log
from molibackup.config import files, safeyaml, sensitive, validation
from molibackup.errors import ConfigError

CONFIG_ENV = "MOLIBACKUP_CONFIG"
CONFIG_NAME = "molibackup.yaml"
SYSTEM_CONFIG = Path("/etc/molibackup") / CONFIG_NAME


@dataclass(frozen=True)
class MetricsSettings:
    pushgateway: str | None
    textfile: Path | None
    timeout: int


@dataclass(frozen=True)
class GlobalSettings:
    """The `global` section; its defaults are the schema's (see `default_settings`)."""

    loglevel: str
    logformat: str
    concurrency: int
    max_attempts: int | None
    connect_timeout: int
    read_timeout: int
    timeout_attempts: int
    metrics: MetricsSettings
    ping_url: str | None = field(repr=False)
    prices: dict[str, float]  # USD per GB-month, by storage tier
    target_concurrency: int


@dataclass(frozen=True)
class JobConfig:
    """The options every job has; `options` holds the module's own, already validated."""

    name: str
    module: str
    enabled: bool
    dryrun: bool
    source: Path
    options: Mapping[str, Any] = field(repr=False)
    pushgateway: str | None = field(default=None, repr=False)
    ping_url: str | None = field(default=None, repr=False)

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
        if files.probe(candidate):
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        [f"no configuration file found (looked in: {looked}); give one with -c FILE"]
    )


# --- reading ----------------------------------------------------------------------------


def read_yaml(path: Path) -> Any:
    text = files.read_text(path, "configuration file")
    try:
        return safeyaml.load(text)
    except safeyaml.YamlProblem as exc:
        where = f" at {exc.where()}" if exc.where() else ""
        raise ConfigError([f"{path}: invalid YAML{where}: {exc.message}"]) from None


# --- validating -------------------------------------------------------------------------


@functools.cache
def _packaged_schema_text() -> str:
    return resources.files("molibackup").joinpath("schema.json").read_text(encoding="utf-8")


def packaged_schema() -> dict[str, Any]:
    """The packaged schema, a fresh copy each call (read from the package once)."""
    schema: dict[str, Any] = json.loads(_packaged_schema_text())
    return schema


def read_schema(path: Path | None) -> dict[str, Any] | bool:
    """The packaged schema, or the one at `path` checked to be a usable draft-07 schema."""
    if path is None:
        return packaged_schema()
    text = files.read_text(path, "schema file")
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}: the schema is not valid JSON: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: the schema is not usable: nested too deeply"]) from None
    validation.check_schema(schema, path)
    checked: dict[str, Any] | bool = schema
    return checked


def extra_problems(data: Any, schema: dict[str, Any] | bool, schema_path: Path,
                   source: Path) -> list[str]:
    """What another schema (--schema) refuses on top of the packaged one; it adds refusals
    only, and a schema that cannot be applied is one line, not a crash."""
    try:
        return validation.schema_problems(data, schema, source)
    except RecursionError:
        return [f"{schema_path}: the schema cannot be applied: it refers to itself endlessly"]
    except Exception as exc:  # a user's schema can fail in many ways; none may crash the run
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return [f"{schema_path}: the schema cannot be applied: {type(exc).__name__}"
                f"{': ' + detail if detail else ''}"]


def _resolve(schema: Mapping[str, Any], node: Any) -> Any:
    """A local `$ref` (#/definitions/...) followed, for the structure only."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
    return node


def with_defaults(data: Any, spec: Any, schema: Mapping[str, Any]) -> Any:
    """`data` with the schema's defaults filled in, at every depth (mappings, lists of
    mappings). Only a default stated on the option itself applies: an option that refers to
    another's definition (a copy destination's `min_keep`) inherits the job's value instead."""
    spec = _resolve(schema, spec)
    if not isinstance(spec, dict):
        return data
    if isinstance(data, list):
        return [with_defaults(item, spec.get("items"), schema) for item in data]
    if not isinstance(data, dict):
        return data
    properties = spec.get("properties", {})
    for part in spec.get("allOf", []):
        properties = {**properties, **_resolve(schema, part).get("properties", {})}
    filled = dict(data)
    for key, option in properties.items():
        if key not in filled and isinstance(option, dict) and "default" in option:
            filled[key] = option["default"]
    return {key: with_defaults(value, properties.get(key), schema)
            for key, value in filled.items()}


def _module_spec(schema: Mapping[str, Any], module: str) -> Mapping[str, Any]:
    spec: Mapping[str, Any] = schema.get("definitions", {}).get(module, {})
    return spec


def settings_from(raw_global: Mapping[str, Any] | None,
                  schema: Mapping[str, Any] | None = None) -> GlobalSettings:
    """The `global` section (validated) as settings, the schema's defaults filled in."""
    schema = packaged_schema() if schema is None else schema
    spec = schema["properties"]["global"]
    filled = with_defaults(dict(raw_global or {}), spec, schema)
    metrics = with_defaults(dict(filled.get("metrics") or {}),
                            spec["properties"]["metrics"], schema)
    return GlobalSettings(
        loglevel=filled["loglevel"],
        logformat=filled["logformat"],
        concurrency=filled["concurrency"],
        max_attempts=filled.get("max_attempts"),
        connect_timeout=filled["connect_timeout"],
        read_timeout=filled["read_timeout"],
        timeout_attempts=filled["timeout_attempts"],
        metrics=MetricsSettings(pushgateway=metrics.get("pushgateway"),
                                textfile=Path(metrics["textfile"]) if metrics.get(
                                    "textfile") else None,
                                timeout=int(metrics["timeout"])),
        ping_url=filled.get("ping_url"),
        prices={tier: float(price) for tier, price in with_defaults(
            dict(filled.get("prices") or {}), spec["properties"]["prices"], schema).items()},
        target_concurrency=int(filled["target_concurrency"]),
    )


def default_settings() -> GlobalSettings:
    """The settings of a file without a `global` section."""
    return settings_from({})


def build_config(data: Any, source: Path, schema: dict[str, Any] | bool | None = None,
                 schema_path: Path | None = None) -> Config:
    """Validate raw YAML data and turn it into a typed Config (raises ConfigError).

    The packaged schema always applies; `schema` (from --schema) can only add refusals.
    """
    # Before any line is printed: a secret may be echoed by the problem of another option.
    log.register_secrets(sensitive.in_config(data))
    if data is None:
        raise ConfigError([f"{source}: the file is empty; it needs a 'jobs' section"])
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{source}: must be a mapping with 'global' and 'jobs' sections, "
             f"got {validation.describe(data)}"]
        )
    packaged = packaged_schema()
    problems = validation.check(data, packaged, source,
                                secret_values=frozenset(sensitive.in_config(data)))
    if schema is not None and schema != packaged and not problems:
        problems += [line for line in extra_problems(data, schema, schema_path or source, source)
                     if line not in problems]
    if problems:
        raise ConfigError(problems)

    settings = settings_from(data.get("global"), packaged)
    jobs = []
    for name, raw_job in data["jobs"].items():
        job = with_defaults(raw_job, _module_spec(packaged, raw_job["module"]), packaged)
        jobs.append(JobConfig(name=str(name), module=job.pop("module"),
                              enabled=job.pop("enabled", True), dryrun=job.pop("dryrun", False),
                              source=source,
                              pushgateway=(job.pop("metrics", None) or {}).get("pushgateway"),
                              ping_url=job.pop("ping_url", None), options=job))
    return Config(path=source, settings=settings, jobs=tuple(jobs))


def load(path: Path, schema_path: Path | None = None) -> Config:
    """Read and validate one configuration file."""
    schema = read_schema(schema_path) if schema_path is not None else None
    return build_config(read_yaml(path), path, schema, schema_path)


def option_default(module: str, option: str) -> Any:
    """The schema's default of one option of a module."""
    return packaged_schema()["definitions"][module]["properties"][option]["default"]
