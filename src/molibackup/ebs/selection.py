"""Which volumes a job backs up: by instance (id, `local`, tags), by volume tags, or by the
Kubernetes PersistentVolumeClaims the EBS CSI driver provisioned them for.

Every filter sent to EC2 is checked again on our side: a selection never widens because a
filter was ignored.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from molibackup.aws.clients import paginate
from molibackup.ebs.claims import RESTORED_UNUSED, several, states_of
from molibackup.ebs.options import ClaimSelector, Options
from molibackup.ebs.tags import (
    CLUSTER_TAG_PREFIX,
    LEGACY_CLUSTER_TAG,
    PV_NAME,
    PVC_NAME,
    PVC_NAMESPACE,
    RESTORE_ID_TAG,
    Claim,
    Volume,
    VolumeShape,
    filters_for_tags,
    tag_dict,
)
from molibackup.errors import AwsError, JobError

if TYPE_CHECKING:
    from loguru import Logger
    from mypy_boto3_ec2 import EC2Client

INSTANCE_IDS_PER_CALL = 200  # EC2's limit on values of one filter



@dataclass(frozen=True)
class Instance:
    instance_id: str
    root_device: str | None


def tags_match(tags: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(tags.get(key) == value for key, value in wanted.items())


def claim_matches(tags: Mapping[str, str], selector: ClaimSelector) -> bool:
    namespace, name = tags.get(PVC_NAMESPACE), tags.get(PVC_NAME)
    if namespace is None or name is None:
        return False
    if selector.namespaces and not any(fnmatch.fnmatchcase(namespace, pattern)
                                       for pattern in selector.namespaces):
        return False
    if selector.names and not any(fnmatch.fnmatchcase(name, pattern)
                                  for pattern in selector.names):
        return False
    if selector.cluster is not None:
        owned = tags.get(CLUSTER_TAG_PREFIX + selector.cluster) in ("owned", "shared")
        return owned or tags.get(LEGACY_CLUSTER_TAG) == selector.cluster
    return True


def cluster_of(tags: Mapping[str, str]) -> str | None:
    """The cluster id a volume's tags name, if any."""
    for key, value in sorted(tags.items()):
        if key.startswith(CLUSTER_TAG_PREFIX) and value in ("owned", "shared"):
            return key.removeprefix(CLUSTER_TAG_PREFIX)
    return tags.get(LEGACY_CLUSTER_TAG)


class Selector:
    def __init__(self, options: Options, client: EC2Client, log: Logger,
                 purpose: str = "the job selects", job_name: str | None = None) -> None:
        self.options = options
        self.client = client
        self.log = log
        #: Whose snapshots tell whether a restored volume of a claim was ever attached.
        self.job_name = job_name
        #: Every volume carrying a selected claim's tags, and its state (claims.py), the
        #: restored-unused ones included, which are not selected.
        self.claim_volumes: list[tuple[Volume, str]] = []
        #: How the found volumes are named in the log: only the backup run backs them up.
        self.purpose = purpose
        #: The root device name of each instance seen, such as /dev/xvda.
        self.root_devices: dict[str, str | None] = {}

    def describe(self, instance_id: str | None) -> str:
        """The selection in words, for a job that matched nothing."""
        parts = [f"region {self.options.aws_region}"]
        if instance_id:
            parts.append(f"instance {instance_id}")
        if self.options.instance_tags:
            parts.append(f"instance tags {dict(self.options.instance_tags)}")
        if self.options.claims:
            parts.append(f"claims {self.options.claims.describe()}")
        if self.options.volume_tags:
            parts.append(f"volume tags {dict(self.options.volume_tags)}")
        return ", ".join(parts)

    def select(self, instance_id: str | None) -> list[Volume]:
        if self.options.claims is not None:
            volumes = self.claimed_volumes(self.options.claims)
        elif instance_id is None and not self.options.instance_tags:
            self.log.info(f"no instance_id or instance tags given: every instance in "
                          f"{self.options.aws_region} is in scope")
            raw = paginate(self.client, "describe_volumes", "Volumes", Filters=[
                {"Name": "attachment.status", "Values": ["attached"]},
                *filters_for_tags(self.options.volume_tags)])
            raw_volumes = list(raw)
            instances = None
            if self.options.exclude_boot_volume:
                ids = sorted({a["InstanceId"] for v in raw_volumes
                              for a in v.get("Attachments", []) if a.get("State") == "attached"})
                instances = {i.instance_id: i for i in self.find_instances(None, among=ids)}
            volumes = self.attached_volumes(raw_volumes, instances)
        else:
            found = self.find_instances(instance_id)
            shown = ", ".join(i.instance_id for i in found[:20]) or "-"
            more = f" and {len(found) - 20} more" if len(found) > 20 else ""
            self.log.info(f"found {len(found)} instance(s): {shown}{more}")
            volumes = []
            for start in range(0, len(found), INSTANCE_IDS_PER_CALL):
                batch = {i.instance_id: i for i in found[start:start + INSTANCE_IDS_PER_CALL]}
                raw = paginate(self.client, "describe_volumes", "Volumes", Filters=[
                    {"Name": "attachment.instance-id", "Values": sorted(batch)},
                    *filters_for_tags(self.options.volume_tags)])
                volumes.extend(self.attached_volumes(raw, batch))
        unique = {volume.volume_id: volume for volume in volumes}
        volumes = [unique[key] for key in sorted(unique)]
        self.log.info(f"found {len(volumes)} volume(s) {self.purpose}")
        for volume in volumes:
            where = (f"attached to {', '.join(volume.instance_ids)}" if volume.instance_ids
                     else "not attached")
            claim = f", claim {volume.claim.namespace}/{volume.claim.name}" if volume.claim else ""
            self.log.info(f"volume {volume.volume_id} ({volume.name}) {where}{claim}")
        return volumes

    # --- instances ----------------------------------------------------------------------

    def find_instances(self, instance_id: str | None,
                       among: list[str] | None = None) -> list[Instance]:
        """The instances to back up: the one given, or those with the job's instance tags
        (among the ids given, when the volumes were found first)."""
        tag_filters = filters_for_tags(self.options.instance_tags)
        if instance_id:
            calls: list[dict[str, Any]] = [{"InstanceIds": [instance_id], "Filters": tag_filters}]
        elif among is not None:
            calls = [{"Filters": [*tag_filters, {"Name": "instance-id",
                                                 "Values": among[i:i + INSTANCE_IDS_PER_CALL]}]}
                     for i in range(0, len(among), INSTANCE_IDS_PER_CALL)]
        else:
            calls = [{"Filters": tag_filters}]
        instances: dict[str, Instance] = {}
        for kwargs in calls:
            try:
                reservations = list(paginate(self.client, "describe_instances",
                                             "Reservations", **kwargs))
            except AwsError as exc:
                if instance_id and exc.code.startswith("InvalidInstanceID"):
                    raise JobError(f"instance {instance_id} does not exist in region "
                                   f"{self.options.aws_region} ({exc.code})") from None
                raise
            for reservation in reservations:
                for raw in reservation["Instances"]:
                    if tags_match(tag_dict(raw.get("Tags")), self.options.instance_tags):
                        instances[raw["InstanceId"]] = Instance(raw["InstanceId"],
                                                                raw.get("RootDeviceName"))
                        self.root_devices[raw["InstanceId"]] = raw.get("RootDeviceName")
        return [instances[key] for key in sorted(instances)]

    def attached_volumes(self, raw_volumes: Iterable[Any],
                         instances: Mapping[str, Instance] | None) -> list[Volume]:
        """Volumes attached to the wanted instances, checked again here, not only by filter;
        without their boot volumes when the job says so."""
        volumes = []
        for raw in raw_volumes:
            tags = tag_dict(raw.get("Tags"))
            if not tags_match(tags, self.options.volume_tags):
                continue
            attachments = [a for a in raw.get("Attachments", []) if a.get("State") == "attached"
                           and (instances is None or a["InstanceId"] in instances)]
            if not attachments:
                continue
            boot = instances is not None and any(
                a.get("Device") and a.get("Device") == instances[a["InstanceId"]].root_device
                for a in attachments)
            if boot and self.options.exclude_boot_volume:
                self.log.info(f"volume {raw['VolumeId']} is the boot volume of "
                              f"{attachments[0]['InstanceId']}: excluded (exclude_boot_volume)")
                continue
            volume_id = raw["VolumeId"]
            volumes.append(Volume(volume_id, tags.get("Name") or volume_id,
                                  tuple(sorted(a["InstanceId"] for a in attachments)), tags,
                                  boot=boot, shape=VolumeShape.of(raw)))
        return volumes

    # --- claims -------------------------------------------------------------------------

    def claimed_volumes(self, selector: ClaimSelector) -> list[Volume]:
        """The volumes of the matching claims, attached or not: a claim's volume is detached
        while its pod is rescheduled, and must still be backed up."""
        filters: list[Any] = [{"Name": "tag-key", "Values": [PVC_NAMESPACE]},
                              *filters_for_tags(self.options.volume_tags)]
        exact_namespaces = [n for n in selector.namespaces if not any(c in n for c in "*?[")]
        if exact_namespaces and len(exact_namespaces) == len(selector.namespaces):
            filters.append({"Name": f"tag:{PVC_NAMESPACE}", "Values": exact_namespaces})
        volumes = []
        for raw in paginate(self.client, "describe_volumes", "Volumes", Filters=filters):
            tags = tag_dict(raw.get("Tags"))
            if not claim_matches(tags, selector) or not tags_match(tags,
                                                                   self.options.volume_tags):
                continue
            claim = Claim(tags[PVC_NAMESPACE], tags[PVC_NAME], tags.get(PV_NAME, ""),
                          cluster_of(tags))
            attached = tuple(sorted(a["InstanceId"] for a in raw.get("Attachments", [])
                                    if a.get("State") == "attached"))
            volumes.append(Volume(raw["VolumeId"], f"{claim.namespace}/{claim.name}",
                                  attached, tags, claim=claim, shape=VolumeShape.of(raw)))
        states = states_of(self.client, self.job_name, volumes)
        self.claim_volumes = [(volume, states[volume.volume_id]) for volume in volumes]
        for claim_name, carriers in sorted(several(volumes, states).items()):
            self.log.warning(f"claim {claim_name} is carried by {len(carriers)} volumes: "
                             f"{', '.join(carriers)}")
        for volume in volumes:
            if states[volume.volume_id] == RESTORED_UNUSED:
                self.log.info(f"volume {volume.volume_id} of claim {volume.name}: made by "
                              f"restore {volume.tags.get(RESTORE_ID_TAG)} and never attached: "
                              "not the claim's data, not selected")
        return [v for v in volumes if states[v.volume_id] != RESTORED_UNUSED]


def attached_data_volume_ids(client: EC2Client, volumes: list[Volume],
                             root_devices: dict[str, str | None]) -> dict[str, list[str]]:
    """The data (non-root) volumes attached to the instances of `volumes`, by instance: those
    the job does not select are excluded from the instance's multi-volume snapshot."""
    instance_ids = sorted({volume.instance_ids[0] for volume in volumes})
    attached: dict[str, list[str]] = {instance: [] for instance in instance_ids}
    for start in range(0, len(instance_ids), INSTANCE_IDS_PER_CALL):
        batch = instance_ids[start:start + INSTANCE_IDS_PER_CALL]
        for raw in paginate(client, "describe_volumes", "Volumes",
                            Filters=[{"Name": "attachment.instance-id", "Values": batch}]):
            for attachment in raw.get("Attachments", []):
                instance = attachment.get("InstanceId")
                if instance in attached and attachment.get("Device") != root_devices.get(
                        instance):
                    attached[instance].append(raw["VolumeId"])
    return attached
