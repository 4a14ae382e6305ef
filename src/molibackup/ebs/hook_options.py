"""A job's `hooks` option: what runs on an instance around its snapshots, as parsed from the
configuration (the backup run's `hooks` module sends it through SSM)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from molibackup.config import JobConfig

SHELL = {"linux": "AWS-RunShellScript", "windows": "AWS-RunPowerShellScript"}


@dataclass(frozen=True)
class Hook:
    """What runs on an instance: an SSM document and its parameters."""

    document: str
    parameters: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def describe(self) -> str:
        commands = self.parameters.get("commands")
        return f"{len(commands)} command(s)" if commands else f"document {self.document}"


@dataclass(frozen=True)
class HookOptions:
    pre: Hook | None
    post: Hook | None
    timeout: int
    on_pre_failure: str  # crash_consistent or skip
    freeze: tuple[str, ...] = ()
    max_freeze: int = 0


def commands_hook(commands: Sequence[str], platform: str, timeout: int) -> Hook:
    return Hook(SHELL[platform], {"commands": list(commands),
                                  "executionTimeout": [str(timeout)]})


def freeze_commands(mounts: Sequence[str], max_freeze: int) -> tuple[list[str], list[str]]:
    """(pre, post) for the freeze short form. The guard starts first, detached from the SSM
    agent's command (setsid), so it thaws whatever froze even if every later step fails."""
    points = " ".join(shlex.quote(mount) for mount in mounts)
    thaw = f'for m in {points}; do fsfreeze -u "$m" 2>/dev/null || true; done'
    pre = [
        "set -eu",
        f"setsid nohup sh -c {shlex.quote(f'sleep {max_freeze}; {thaw}')} "
        ">/dev/null 2>&1 </dev/null &",
        "sync",
        f'for m in {points}; do fsfreeze -f "$m"; done',
    ]
    post = [f'for m in {points}; do fsfreeze -u "$m" || echo "$m was not frozen (the guard '
            'may have thawed it already)"; done']
    return pre, post


def parse_hook(job: JobConfig, raw: Mapping[str, Any], where: str, problems: list[str], *,
               platform: str, timeout: int) -> Hook | None:
    if "commands" in raw and "document" in raw:
        problems.append(job.problem(where, "give commands or a document, not both"))
    if "parameters" in raw and "document" not in raw:
        problems.append(job.problem(f"{where}.parameters", "parameters are a document's: give "
                                                           "document too, or use commands"))
    if "commands" in raw:
        return commands_hook(raw["commands"], platform, timeout)
    if "document" in raw:
        return Hook(str(raw["document"]), dict(raw.get("parameters") or {}))
    return None


def parse_hooks(job: JobConfig, problems: list[str], claims: bool) -> HookOptions | None:
    raw = job.options.get("hooks")
    if raw is None:
        return None
    if claims:
        problems.append(job.problem(
            "hooks", "cannot be used with persistent_volume_claims: the pods, not the "
                     "instances, own those filesystems, and quiescing them needs Kubernetes "
                     "access molibackup does not take; use hooks with an instance selection"))
    platform, timeout = str(raw["platform"]), int(raw["timeout"])
    freeze = tuple(raw.get("freeze") or ())
    if freeze and ("pre" in raw or "post" in raw):
        problems.append(job.problem("hooks.freeze", "freeze generates pre and post: give "
                                                    "freeze, or pre and post, not both"))
    if freeze and platform != "linux":
        problems.append(job.problem("hooks.freeze", "fsfreeze is Linux's: with platform "
                                                    "windows, give pre and post (VSS)"))
    if not freeze and "pre" not in raw and "post" not in raw:
        problems.append(job.problem("hooks", "give pre (and usually post), or freeze"))
    if freeze:
        pre_commands, post_commands = freeze_commands(freeze, int(raw["max_freeze"]))
        pre: Hook | None = commands_hook(pre_commands, platform, timeout)
        post: Hook | None = commands_hook(post_commands, platform, timeout)
    else:
        pre = parse_hook(job, raw.get("pre", {}), "hooks.pre", problems, platform=platform,
                         timeout=timeout)
        post = parse_hook(job, raw.get("post", {}), "hooks.post", problems, platform=platform,
                          timeout=timeout)
    return HookOptions(pre=pre, post=post, timeout=timeout,
                       on_pre_failure=str(raw["on_pre_failure"]), freeze=freeze,
                       max_freeze=int(raw["max_freeze"]))
