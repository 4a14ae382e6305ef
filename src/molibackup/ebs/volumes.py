"""Making volumes from snapshots, once: for restores (and the restore tests of verify).

CreateVolume takes an idempotency token (`ClientToken`), which real EC2 honours; the volume
is also tagged at creation with its restore id and snapshot, and looked for by those tags
before it is created and after an answer was lost, so that running the same restore again,
or a retry, never makes a second volume (the emulator ignores the token; the lookup is what
the tests prove).
"""

from __future__ import annotations

import string
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from molibackup.ebs.job import Clients
from molibackup.ebs.recovery import SendOnce
from molibackup.ebs.tags import RESTORE_ID_TAG, RESTORED_FROM_TAG, tag_dict, tag_list
from molibackup.errors import AwsError, JobError

if TYPE_CHECKING:
    from loguru import Logger

#: Volume types that take IOPS, and throughput.
IOPS_TYPES = frozenset({"io1", "io2", "gp3"})
THROUGHPUT_TYPES = frozenset({"gp3"})
FREE_DEVICES = tuple(f"/dev/sd{letter}" for letter in string.ascii_lowercase[5:16])  # f-p
#: How often a wait for volumes says it is still waiting.
NOTICE_SECONDS = 60
#: The wait's clock and pause (tests speed a long wait up through them).
clock = time.monotonic
pause = time.sleep
POLL_SECONDS = 2.0
GONE_STATES = frozenset({"deleting", "deleted"})


@dataclass(frozen=True)
class VolumeSpec:
    """One volume to make from one snapshot."""

    snapshot_id: str
    zone: str
    volume_type: str
    size_gib: int
    iops: int | None
    throughput: int | None
    kms_key_id: str | None
    tags: Mapping[str, str] = field(repr=False)
    client_token: str = ""

    def create_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "AvailabilityZone": self.zone, "SnapshotId": self.snapshot_id,
            "VolumeType": self.volume_type, "Size": self.size_gib,
            "TagSpecifications": [{"ResourceType": "volume", "Tags": tag_list(self.tags)}],
        }
        if self.iops is not None and self.volume_type in IOPS_TYPES:
            arguments["Iops"] = self.iops
        if self.throughput is not None and self.volume_type in THROUGHPUT_TYPES:
            arguments["Throughput"] = self.throughput
        if self.kms_key_id:
            arguments.update(Encrypted=True, KmsKeyId=self.kms_key_id)
        if self.client_token:
            arguments["ClientToken"] = self.client_token
        return arguments


@dataclass(frozen=True)
class MadeVolume:
    volume_id: str
    state: str
    zone: str
    attachments: tuple[tuple[str, str], ...] = ()  # (instance, device) attached or attaching
    existed: bool = False  # made by an earlier run of the same restore

    @classmethod
    def of(cls, raw: Mapping[str, Any], existed: bool = False) -> MadeVolume:
        attachments = tuple((str(a["InstanceId"]), str(a.get("Device", "")))
                            for a in raw.get("Attachments", [])
                            if a.get("State") in ("attaching", "attached"))
        return cls(str(raw["VolumeId"]), str(raw.get("State", "creating")),
                   str(raw.get("AvailabilityZone", "")), attachments, existed)


def free_device(taken: Sequence[str], preferred: str | None = None) -> str | None:
    """The preferred device if it is free, else the first free /dev/sd[f-p]."""
    used = {device.removeprefix("/dev/").replace("xvd", "sd") for device in taken}
    if preferred and preferred.removeprefix("/dev/").replace("xvd", "sd") not in used:
        return preferred
    return next((d for d in FREE_DEVICES if d.removeprefix("/dev/") not in used), None)


class VolumeMaker:
    def __init__(self, clients: Clients, send_once: SendOnce, log: Logger) -> None:
        self.clients = clients
        self.send_once = send_once
        self.log = log

    def find(self, restore_id: str, snapshot_id: str) -> MadeVolume | None:
        """The volume this restore made of this snapshot, if an earlier attempt made it."""
        found = self.clients.main.describe_volumes(Filters=[
            {"Name": f"tag:{RESTORE_ID_TAG}", "Values": [restore_id]},
            {"Name": f"tag:{RESTORED_FROM_TAG}", "Values": [snapshot_id]}])["Volumes"]
        alive = [raw for raw in found if raw.get("State") not in GONE_STATES
                 and tag_dict(raw.get("Tags")).get(RESTORE_ID_TAG) == restore_id]
        alive.sort(key=lambda raw: str(raw["VolumeId"]))
        return MadeVolume.of(alive[0], existed=True) if alive else None

    def make(self, spec: VolumeSpec, restore_id: str) -> MadeVolume:
        """The volume of `spec`: found if this restore made it before, else created once."""
        existing = self.find(restore_id, spec.snapshot_id)
        if existing is not None:
            self.log.info(f"volume {existing.volume_id} of restore {restore_id} from "
                          f"{spec.snapshot_id} already exists ({existing.state}): using it")
            return existing

        def send() -> MadeVolume:
            return MadeVolume.of(self.clients.create.create_volume(**spec.create_arguments()))

        def recover(error: str) -> MadeVolume | None:
            try:
                found = self.find(restore_id, spec.snapshot_id)
            except AwsError as exc:
                self.log.warning(f"could not look for a volume a lost CreateVolume may have "
                                 f"made: {exc}")
                return None
            if found:
                self.log.warning(f"the answer to CreateVolume was lost ({error}); found the "
                                 f"volume it made: {found.volume_id}")
            return found

        made, error = self.send_once(send, recover, f"snapshot {spec.snapshot_id}")
        if made is None:
            raise JobError(f"no volume made from {spec.snapshot_id}: {error}")
        self.log.info(f"created volume {made.volume_id} from {spec.snapshot_id} in {spec.zone} "
                      f"({spec.volume_type}, {spec.size_gib} GiB)")
        return made

    def wait_available(self, volume_ids: Sequence[str], timeout_seconds: float,
                       stop: threading.Event) -> dict[str, MadeVolume]:
        """Wait until every volume is available (or in use); JobError when one fails or
        the time is up (the volumes stay: running the same restore again waits for them)."""
        started = clock()
        deadline, said = started + timeout_seconds, -1
        while True:
            answer = self.clients.main.describe_volumes(VolumeIds=list(volume_ids))["Volumes"]
            volumes = {str(raw["VolumeId"]): MadeVolume.of(raw) for raw in answer}
            failed = [v for v in volumes.values() if v.state == "error"]
            if failed:
                raise JobError(f"volume {failed[0].volume_id} is in error state: EC2 could not "
                               "make it from its snapshot")
            waiting = [v for v in volume_ids if volumes.get(v, MadeVolume(v, "creating", ""))
                       .state not in ("available", "in-use")]
            if not waiting:
                return volumes
            if stop.is_set():
                raise JobError(f"interrupted while waiting for {', '.join(waiting)}: they are "
                               "left as they are; run the same restore again to go on")
            if clock() >= deadline:
                raise JobError(f"{', '.join(waiting)} not available after "
                               f"{timeout_seconds:.0f} s: left as they are; run the same "
                               "restore again to wait for them")
            waited = clock() - started
            if int(waited // NOTICE_SECONDS) > said:  # at once, then every NOTICE_SECONDS
                said = int(waited // NOTICE_SECONDS)
                self.log.info(f"waiting for {', '.join(waiting)} to become available: "
                              f"{waited:.0f} s so far, at most {timeout_seconds:.0f} s")
            pause(min(POLL_SECONDS, max(0.0, deadline - clock())))

    def attach(self, volume: MadeVolume, instance_id: str, device: str) -> str:
        """Attach (once): a volume already attached to that instance stays as it is. The device
        returned is the one EC2 shows for the attachment."""
        for instance, attached_as in volume.attachments:
            if instance == instance_id:
                self.log.info(f"volume {volume.volume_id} is already attached to {instance_id} "
                              f"as {attached_as}")
                return attached_as
        answer = self.clients.main.attach_volume(VolumeId=volume.volume_id,
                                                 InstanceId=instance_id, Device=device)
        shown = str(answer.get("Device") or device)  # the device EC2 records, not our plan
        self.log.info(f"attached volume {volume.volume_id} to {instance_id} as {shown}")
        return shown
