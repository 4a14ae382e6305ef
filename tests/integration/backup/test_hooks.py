"""Application-consistent snapshots: pre and post hooks through SSM, against the emulator.

The emulator's SSM reports every command Success at once and runs nothing: tests/support
teaches it to make an instance's invocation fail, time out or stay in progress for a while
(`Emulator.command_outcome`), and records every SendCommand. EC2 and SSM calls go through the
recording proxy, whose log gives their order.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRun, job
from tests.support.cli import executable
from tests.support.ec2proxy import EC2Proxy, Fault
from tests.support.emulator import Emulator
from tests.support.fleet import Fleet, tags_of

Run = Callable[..., CliRun]
FREEZE = {"freeze": ["/var/lib/postgresql", "/wal"], "max_freeze": 30}


@pytest.fixture
def through_proxy(proxy: EC2Proxy, monkeypatch: pytest.MonkeyPatch) -> EC2Proxy:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", proxy.url)
    return proxy


@pytest.fixture
def molibackup(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    return job_cli("db")


def timeline(proxy: EC2Proxy) -> list[str]:
    """pre / post (SendCommand by its comment) and creates, in the order they arrived."""
    order = []
    for action, params in proxy.state.requests:
        if action == "SendCommand":
            order.append(params["Comment"].rsplit(" ", 1)[1])
        elif action in ("CreateSnapshot", "CreateSnapshots"):
            order.append("create")
    return order


def commands(aws_env: Emulator, kind: str) -> list[dict[str, Any]]:
    return [c for c in aws_env.sent_commands() if c["comment"].endswith(f" {kind}")]


def test_pre_then_the_snapshots_then_post_with_the_consistency_tagged(
    fleet: Fleet, molibackup: Any, through_proxy: EC2Proxy, aws_env: Emulator
) -> None:
    db = fleet.instance({"Role": "db"}, {"data": {}, "wal": {}})
    result = molibackup(instance_tag="Role=db", exclude_boot_volume=True,
                        consistency="instance", hooks=FREEZE)
    assert result.status == 0, result.log
    assert timeline(through_proxy) == ["pre", "create", "post"]
    (pre,) = commands(aws_env, "pre")
    assert (pre["document"], pre["instance_ids"]) == ("AWS-RunShellScript", [db.instance_id])
    for snapshot in fleet.job_snapshots("db"):
        tags = tags_of(snapshot)
        assert tags["molibackup:consistency"] == "application"
        assert 0 <= int(tags["molibackup:freeze-ms"]) < 10_000
    assert f"instance {db.instance_id}: application-consistent, frozen for" in result.log


def test_the_freeze_short_form_starts_a_guard_then_freezes_and_post_thaws(
    fleet: Fleet, molibackup: Any, aws_env: Emulator
) -> None:
    fleet.instance({"Role": "db"}, {"data": {}})
    assert molibackup(instance_tag="Role=db", hooks=FREEZE).status == 0
    (pre,) = commands(aws_env, "pre")
    script = pre["parameters"]["commands"]
    guard = next(line for line in script if line.startswith("setsid"))
    assert "sleep 30;" in guard
    assert 'fsfreeze -u "$m"' in guard
    assert script.index(guard) < script.index("sync")
    assert script[-1] == 'for m in /var/lib/postgresql /wal; do fsfreeze -f "$m"; done'
    (post,) = commands(aws_env, "post")
    assert 'fsfreeze -u "$m"' in post["parameters"]["commands"][0]


def test_post_runs_even_when_the_snapshot_fails(
    fleet: Fleet, molibackup: Any, through_proxy: EC2Proxy, aws_env: Emulator
) -> None:
    fleet.instance({"Role": "db"}, {"data": {}})
    through_proxy.state.fault_rules.append(lambda action, _: Fault(
        400, "IncorrectState", "the volume is busy") if action == "CreateSnapshot" else None)
    result = molibackup(instance_tag="Role=db", exclude_boot_volume=True, hooks=FREEZE)
    assert result.status == 2
    assert timeline(through_proxy) == ["pre", "create", "post"]
    assert len(commands(aws_env, "post")) == 1


def test_a_failed_pre_still_snapshots_crash_consistent_and_fails_the_job(
    fleet: Fleet, molibackup: Any, aws_env: Emulator
) -> None:
    db = fleet.instance({"Role": "db"}, {"data": {}})
    aws_env.command_outcome(db.instance_id, "Failed", "psql: could not connect\nquiesce failed")
    result = molibackup(instance_tag="Role=db", exclude_boot_volume=True,
                        hooks={"pre": {"commands": ["quiesce"]}, "post": {"commands": ["go"]}})
    assert result.status == 2
    assert f"instance {db.instance_id}: pre hook Failed: quiesce failed" in result.log
    (snapshot,) = fleet.job_snapshots("db")
    assert tags_of(snapshot)["molibackup:consistency"] == "crash"
    assert len(commands(aws_env, "post")) == 1


def test_skip_makes_no_snapshot_and_keeps_every_older_one(
    fleet: Fleet, molibackup: Any, aws_env: Emulator
) -> None:
    db = fleet.instance({"Role": "db"}, {"data": {}})
    old = fleet.job_snapshot(db.volumes["data"], "db", age_days=60)
    aws_env.command_outcome(db.instance_id, "TimedOut", "")
    result = molibackup(instance_tag="Role=db", exclude_boot_volume=True, retention=30,
                        hooks={**FREEZE, "on_pre_failure": "skip"})
    assert result.status == 2
    assert "no snapshot of it (on_pre_failure: skip)" in result.log
    assert [s["SnapshotId"] for s in fleet.job_snapshots("db")] == [old]
    assert len(commands(aws_env, "post")) == 1  # pre ran: post always follows


def test_no_post_when_pre_was_never_sent(
    fleet: Fleet, molibackup: Any, through_proxy: EC2Proxy, aws_env: Emulator
) -> None:
    fleet.instance({"Role": "db"}, {"data": {}})
    through_proxy.state.fault_rules.append(lambda action, _: Fault(
        400, "AccessDeniedException", "not allowed") if action == "SendCommand" else None)
    result = molibackup(instance_tag="Role=db", exclude_boot_volume=True, hooks=FREEZE)
    assert result.status == 2
    assert through_proxy.calls["SendCommand"] == 1  # pre only
    assert "not allowed to call ssm:SendCommand" in result.log


def test_pre_goes_to_fifty_instances_per_call(
    fleet: Fleet, molibackup: Any, aws_env: Emulator
) -> None:
    instances = [fleet.instance({"Role": "web"}).instance_id for _ in range(60)]
    result = molibackup(instance_tag="Role=web", hooks=FREEZE, allow_empty=True)
    assert result.status == 0, result.log
    pre = commands(aws_env, "pre")
    assert [len(c["instance_ids"]) for c in pre] == [50, 10]
    assert sorted(i for c in pre for i in c["instance_ids"]) == sorted(instances)
    assert len(commands(aws_env, "post")) == 60  # each at once after its own snapshots


def test_sigterm_while_pre_runs_still_sends_post_before_exiting(
    fleet: Fleet, aws_env: Emulator, write_config: Callable[..., Path]
) -> None:
    db = fleet.instance({"Role": "db"}, {"data": {}})
    aws_env.command_outcome(db.instance_id, "Success", in_progress_polls=10_000)
    config = write_config({"jobs": {"db": job(instance_tag="Role=db", hooks=FREEZE)}})
    process = subprocess.Popen([executable(), "-c", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not commands(aws_env, "pre"):
        assert time.monotonic() < deadline, "pre was never sent"
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert len(commands(aws_env, "post")) == 1
    assert fleet.job_snapshots("db") == []


def test_a_dry_run_sends_no_command(fleet: Fleet, molibackup: Any, aws_env: Emulator) -> None:
    fleet.instance({"Role": "db"}, {"data": {}})
    result = molibackup("--dry-run", instance_tag="Role=db", hooks=FREEZE)
    assert result.status == 0, result.log
    assert "no command sent" in result.log
    assert aws_env.sent_commands() == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"persistent_volume_claims": {"namespaces": ["a"]}, "hooks": FREEZE},
                     "the pods, not the instances, own those filesystems", id="claims"),
        pytest.param({"instance_tag": "A=b", "hooks": {**FREEZE, "platform": "windows"}},
                     "fsfreeze is Linux's", id="freeze-on-windows"),
        pytest.param({"instance_tag": "A=b", "hooks": {**FREEZE, "pre": {"commands": ["x"]}}},
                     "give freeze, or pre and post, not both", id="freeze-and-pre"),
        pytest.param({"instance_tag": "A=b", "hooks": {"timeout": 60}},
                     "give pre (and usually post), or freeze", id="nothing-to-run"),
        pytest.param({"instance_tag": "A=b", "hooks": {"freeze": ["/"]}},
                     "hooks.freeze.0: must be an absolute mount point", id="root"),
        pytest.param({"instance_tag": "A=b", "hooks": {"pre": {"commands": ["a"],
                                                               "document": "D-1"}}},
                     "give commands or a document, not both", id="commands-and-document"),
    ],
)
def test_hooks_that_cannot_work_are_refused(molibackup: Any, options: dict[str, Any],
                                            expected: str) -> None:
    result = molibackup("--validate", **options)
    assert result.status == 1
    assert expected in result.log


def test_the_freeze_window_is_in_the_snapshots_json_listing(
    fleet: Fleet, molibackup: Any
) -> None:
    fleet.instance({"Role": "db"}, {"data": {}})
    assert molibackup(instance_tag="Role=db", hooks=FREEZE).status == 0
    listing = molibackup("snapshots", "--output", "json", instance_tag="Role=db",
                         hooks=FREEZE)
    assert listing.status == 0
    assert json.loads(listing.out)["jobs"][0]["volumes"]
