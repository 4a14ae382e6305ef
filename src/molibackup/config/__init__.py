"""The input boundary: the configuration file found, read within limits, validated against
the schema, and turned into frozen settings once; nothing past it touches raw YAML."""

from molibackup.config.loading import (
    CONFIG_ENV,
    CONFIG_NAME,
    SYSTEM_CONFIG,
    Config,
    GlobalSettings,
    JobConfig,
    MetricsSettings,
    build_config,
    candidate_paths,
    default_settings,
    find_config,
    load,
    option_default,
    packaged_schema,
)

__all__ = [
    "CONFIG_ENV", "CONFIG_NAME", "SYSTEM_CONFIG", "Config", "GlobalSettings", "JobConfig",
    "MetricsSettings", "build_config", "candidate_paths", "default_settings", "find_config",
    "load", "option_default", "packaged_schema",
]
