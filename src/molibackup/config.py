"""Find, read and validate the configuration file; the only place that handles raw YAML.

Every problem is collected and reported at once, one line each, as
``FILE: jobs.NAME.OPTION: what is wrong``. Defaults come from the JSON Schema and are applied
here, once; everything downstream receives frozen dataclasses.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from molibackup import files, log, safeyaml, validation
from molibackup.errors import ConfigError

CONFIG_ENV = "MOLIBACKUP_CONFIG"
CONFIG_NAME = "molibackup.yaml"
SYSTEM_CONFIG = Path("/etc/molibackup") / CONFIG_NAME


@dataclass(frozen=True)
class MetricsSettings:
    pushgateway: str | None = None
    textfile: Path | None = None
    timeout: int = 5


@dataclass(frozen=True)
class GlobalSettings:
    loglevel: str = "info"
    logformat: str = "text"
    concurrency: int = 8
    max_attempts: int | None = None
    connect_timeout: int = 10
    read_timeout: int = 60
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    ping_url: str | None = field(default=None, repr=False)


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


def packaged_schema() -> dict[str, Any]:
    text = resources.files("molibackup").joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
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


def _apply_defaults(data: dict[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    filled = dict(data)
    for key, spec in properties.items():
        if key not in filled and isinstance(spec, dict) and "default" in spec:
            filled[key] = spec["default"]
    return filled


def _metrics_settings(raw: Mapping[str, Any], global_properties: Mapping[str, Any]
                      ) -> MetricsSettings:
    defaults = global_properties["metrics"]["properties"]
    filled = _apply_defaults(dict(raw), defaults)
    textfile = filled.get("textfile")
    return MetricsSettings(pushgateway=filled.get("pushgateway"),
                           textfile=Path(textfile) if textfile else None,
                           timeout=int(filled["timeout"]))


def _module_properties(schema: Mapping[str, Any], module: str) -> Mapping[str, Any]:
    definition = schema.get("definitions", {}).get(module, {})
    properties: Mapping[str, Any] = definition.get("properties", {})
    return properties


def secrets_in(data: Any) -> list[str]:
    """The secret values of raw configuration data, whatever their type or validity."""
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, dict):
        return []
    found = [str(job[key]) for job in jobs.values() if isinstance(job, dict)
             for key in validation.SECRET_OPTIONS if job.get(key) is not None]
    found += [str(target["external_id"]) for job in jobs.values() if isinstance(job, dict)
              and isinstance(job.get("copy_to"), list) for target in job["copy_to"]
              if isinstance(target, dict) and target.get("external_id") is not None]
    glob = data.get("global") if isinstance(data, dict) else None
    if isinstance(glob, dict) and glob.get("ping_url") is not None:
        found.append(str(glob["ping_url"]))
    return found


def build_config(data: Any, source: Path, schema: dict[str, Any] | bool | None = None,
                 schema_path: Path | None = None) -> Config:
    """Validate raw YAML data and turn it into a typed Config (raises ConfigError).

    The packaged schema always applies; `schema` (from --schema) can only add refusals.
    """
    # Before any line is printed: a secret may be echoed by the problem of another option.
    log.register_secrets(secrets_in(data))
    if data is None:
        raise ConfigError([f"{source}: the file is empty; it needs a 'jobs' section"])
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{source}: must be a mapping with 'global' and 'jobs' sections, "
             f"got {validation.describe(data)}"]
        )
    packaged = packaged_schema()
    problems = validation.check(data, packaged, source)
    if schema is not None and schema != packaged and not problems:
        problems += [line for line in extra_problems(data, schema, schema_path or source, source)
                     if line not in problems]
    if problems:
        raise ConfigError(problems)

    global_properties = packaged["properties"]["global"]["properties"]
    raw_global = _apply_defaults(data.get("global") or {}, global_properties)
    settings = GlobalSettings(
        loglevel=raw_global["loglevel"],
        logformat=raw_global["logformat"],
        concurrency=raw_global["concurrency"],
        max_attempts=raw_global.get("max_attempts"),
        connect_timeout=raw_global["connect_timeout"],
        read_timeout=raw_global["read_timeout"],
        metrics=_metrics_settings(raw_global.get("metrics") or {}, global_properties),
        ping_url=raw_global.get("ping_url"),
    )
    jobs = []
    for name, raw_job in data["jobs"].items():
        job = _apply_defaults(raw_job, _module_properties(packaged, raw_job["module"]))
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


def secrets_of(config: Config) -> list[str]:
    """Values that must never appear in a log line."""
    found = [str(job.options[key]) for job in config.jobs
             for key in ("accesskey_secret", "external_id") if key in job.options]
    found += [str(target["external_id"]) for job in config.jobs
              for target in job.options.get("copy_to") or [] if "external_id" in target]
    found += [job.ping_url for job in config.jobs if job.ping_url]
    if config.settings.ping_url:
        found.append(config.settings.ping_url)
    for url in [config.settings.metrics.pushgateway, *(job.pushgateway for job in config.jobs)]:
        password = urllib.parse.urlsplit(url).password if url else None
        if password:
            found.append(password)
    return found
