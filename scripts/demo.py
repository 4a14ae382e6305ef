"""`make demo`: run a real backup job against a local EC2 emulator seeded with a sample fleet,
then give one volume back.

Starts the emulator on loopback, creates three instances (two tagged Backup=daily) with their
volumes and a few snapshots left by "earlier runs", writes a config file, runs the
`molibackup` command against it exactly as a user would, and shows the snapshots before and
after; then lists one volume's snapshots (`molibackup snapshots`) and restores the newest
(`molibackup restore`), showing the new volume.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.emulator import Emulator
from tests.support.fleet import REGION, Fleet

CONFIG = """\
global:
  loglevel: info

jobs:
  web-daily:
    module: ebs-snapshot
    aws_region: {region}
    retention: 30
    instance_tags:
      Backup: daily
"""


def show(fleet: Fleet, title: str) -> None:
    now = datetime.now(UTC)
    print(f"\n== {title}")
    print(f"{'snapshot':<24} {'volume':<24} {'age':>5}  {'job':<10} name")
    for snap in sorted(fleet.snapshots(), key=lambda s: (s["VolumeId"], s["StartTime"])):
        tags = {t["Key"]: t["Value"] for t in snap.get("Tags", [])}
        age = (now - snap["StartTime"]).days
        print(f"{snap['SnapshotId']:<24} {tags.get('molibackup:volume-id', snap['VolumeId']):<24} "
              f"{age:>4}d  {tags.get('molibackup:job', '(none)'):<10} {tags.get('Name', '')}")


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    emulator = Emulator().start()
    try:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo-secret",
               "AWS_ENDPOINT_URL_EC2": emulator.url, "AWS_EC2_METADATA_DISABLED": "true"}
        client = boto3.client("ec2", region_name=REGION, endpoint_url=emulator.url,
                              aws_access_key_id="demo", aws_secret_access_key="demo-secret")
        fleet = Fleet(client, emulator)
        web1 = fleet.instance({"Name": "web-1", "Backup": "daily"}, {"web-1-data": {}})
        fleet.instance({"Name": "web-2", "Backup": "daily"}, {"web-2-data": {}})
        dev = fleet.instance({"Name": "dev-box"}, {"dev-scratch": {}})
        data = web1.volumes["web-1-data"]
        for age in (3, 20, 45, 70):
            fleet.job_snapshot(data, "web-daily", age_days=age)
        fleet.snapshot(data, {"Name": "hand-made-before-upgrade"}, age_days=120)
        fleet.snapshot(dev.volumes["dev-scratch"], {"Name": "dev-scratch-manual"}, age_days=90)
        show(fleet, "snapshots before the run")

        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "molibackup.yaml"
            config.write_text(CONFIG.format(region=REGION), encoding="utf-8")
            print(f"\n== molibackup -c {config}\n{config.read_text()}", flush=True)
            molibackup = Path(sys.executable).parent / "molibackup"
            status = subprocess.call([str(molibackup), "-c", str(config)], env=env)

            show(fleet, f"snapshots after the run (molibackup exited {status})")
            print("\nThe 45- and 70-day snapshots of web-daily expired (retention 30) and "
                  "were deleted;\nthe hand-made ones and the dev box (not tagged "
                  "Backup=daily) were left alone.")
            if status != 0:
                return status
            for step, command in (
                    ("the snapshots of one volume", ["snapshots", "--volume", data]),
                    ("give its newest backup back", ["restore", "--job", "web-daily",
                                                     "--volume", data])):
                print(f"\n== {step}: molibackup -c {config.name} {' '.join(command)}",
                      flush=True)
                status = subprocess.call([str(molibackup), "-c", str(config), *command],
                                         env=env)
                if status != 0:
                    return status
        restored = [v for v in client.describe_volumes()["Volumes"]
                    if any(t["Key"] == "molibackup:restored-from" for t in v.get("Tags", []))]
        for volume in restored:
            tags = {t["Key"]: t["Value"] for t in volume["Tags"]}
            print(f"\nrestored volume {volume['VolumeId']} ({volume['State']}) in "
                  f"{volume['AvailabilityZone']}, from {tags['molibackup:restored-from']} of "
                  f"{tags['molibackup:restored-from-volume']}")
        return status
    finally:
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
