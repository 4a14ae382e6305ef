"""Shaping a restore's volumes: their zone, type, size, IOPS, throughput and tags, the
claims their manifests bind, and the devices they attach as. Reads only; every refusal is
made here, before the first change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from molibackup.ebs.catalog import (
    SnapshotInfo,
    existing_volumes,
)
from molibackup.ebs.restore import choosing
from molibackup.ebs.restore.manifests import ClaimRestore
from molibackup.ebs.restore.request import Planned, Step, Where
from molibackup.ebs.tags import (
    CLUSTER_TAG,
    PV_NAME,
    PVC_NAME,
    PVC_NAMESPACE,
    RESTORE_ID_TAG,
    RESTORED_CLAIM_TAG,
    RESTORED_FOR_JOB_TAG,
    RESTORED_FROM_TAG,
    RESTORED_FROM_VOLUME_TAG,
    VolumeShape,
)
from molibackup.ebs.volumes import IOPS_TYPES, THROUGHPUT_TYPES, VolumeSpec, free_device
from molibackup.errors import AwsError


class Shaping(Step):
    """What each new volume is to be, once the snapshots are chosen (planning.py)."""

    def shapes(self, where: Where, snapshots: Sequence[SnapshotInfo]) -> dict[str, VolumeShape]:
        """What each volume looked like: as recorded, else as its source volume is now."""
        shapes = {s.snapshot_id: s.shape for s in snapshots}
        unknown = [s for s in snapshots if shapes[s.snapshot_id] is None]
        alive = (existing_volumes(where.client, [s.volume_id for s in unknown])
                 if unknown and where.copy_of is None else {})
        return {s.snapshot_id: shapes[s.snapshot_id] or (
            VolumeShape.of(alive[s.volume_id]) if s.volume_id in alive else VolumeShape())
            for s in snapshots}

    def zones(self, where: Where) -> list[str]:
        answer = where.client.describe_availability_zones(
            Filters=[{"Name": "region-name", "Values": [where.region]}])
        return sorted(str(z["ZoneName"]) for z in answer["AvailabilityZones"])

    def plan(self, where: Where, snapshots: Sequence[SnapshotInfo]
             ) -> tuple[str, list[Planned], ClaimRestore | None]:
        request = self.request
        shapes = self.shapes(where, snapshots)
        zones = self.volume_zones(where, snapshots, shapes)
        targets = self.claim_targets(snapshots, zones)
        named = [f"{c.namespace}/{c.claim_name}" for c in targets if c is not None]
        restore_id = request.restore_id or choosing.restore_id(
            self.job, [s.snapshot_id for s in snapshots], ",".join(sorted(set(zones))),
            ",".join(named) or None, where.label)
        planned = []
        for snapshot, target, zone in zip(snapshots, targets, zones, strict=True):
            claim = replace(target, restore_id=restore_id) if target is not None else None
            spec = self.spec(snapshot, shapes[snapshot.snapshot_id], zone, restore_id, claim)
            planned.append(Planned(snapshot, spec, claim=replace(
                claim, size_gib=spec.size_gib) if claim is not None else None))
        single = planned[0].claim if len(planned) == 1 else None
        return restore_id, planned, single

    def volume_zones(self, where: Where, snapshots: Sequence[SnapshotInfo],
                     shapes: dict[str, VolumeShape]) -> list[str]:
        """The zone of each new volume: --availability-zone; else the recorded one, shared
        by an instance's set, each claim's own in a namespace (a StatefulSet spreads its
        pods over zones)."""
        request = self.request
        if request.zone is None and request.from_region is not None:
            raise self.problem(f"--availability-zone is required with --from-region: the "
                               f"recorded zone is in {self.context.job.options.aws_region}")
        if request.zone is not None:
            zones = [request.zone] * len(snapshots)
        elif request.claims_namespace is not None:
            lacking = [s.snapshot_id for s in snapshots if not shapes[s.snapshot_id].zone]
            if lacking:
                raise self.problem(f"snapshot {lacking[0]} records no availability zone and "
                                   "its volume no longer exists: give --availability-zone")
            zones = [str(shapes[s.snapshot_id].zone) for s in snapshots]
        else:
            recorded = {shape.zone for shape in shapes.values() if shape.zone}
            if len(recorded) != 1:
                raise self.problem("the snapshot records no availability zone and its volume "
                                   "no longer exists: give --availability-zone")
            zones = [recorded.pop()] * len(snapshots)
        known = self.zones(where)
        for zone in sorted(set(zones)):
            if zone not in known:
                raise self.problem(f"--availability-zone {zone} is not a zone of "
                                   f"{where.region} (its zones: {', '.join(known)})")
        return zones

    def claim_targets(self, snapshots: Sequence[SnapshotInfo], zones: Sequence[str]
                      ) -> list[ClaimRestore | None]:
        """The claim each snapshot's manifests bind: a namespace's each its own (moved to
        --namespace, when given), else the one claim of --claim or --claim-name."""
        if self.request.claims_namespace is None:
            return [self.claim_target(snapshots, zones[0])] * len(snapshots)
        targets: list[ClaimRestore | None] = []
        for snapshot, zone in zip(snapshots, zones, strict=True):
            assert snapshot.claim is not None
            targets.append(ClaimRestore(
                namespace=self.request.namespace or snapshot.claim[0],
                claim_name=snapshot.claim[1], volume_id="", zone=zone, size_gib=0,
                restore_id="", snapshot_id=snapshot.snapshot_id,
                storage_class=self.request.storage_class or "", fs_type=self.request.fs_type,
                part=snapshot.claim[1]))
        return targets

    def spec(self, snapshot: SnapshotInfo, shape: VolumeShape, zone: str, restore_id: str,
             claim: ClaimRestore | None) -> VolumeSpec:
        request = self.request
        volume_type = request.volume_type or shape.volume_type
        if volume_type is None:
            raise self.problem(f"snapshot {snapshot.snapshot_id} records no volume type and "
                               f"its volume {snapshot.volume_id} no longer exists: give "
                               "--volume-type (gp3, gp2, io2 ...)")
        if request.iops is not None and volume_type not in IOPS_TYPES:
            raise self.problem(f"--iops: a {volume_type} volume takes no IOPS setting (only "
                               f"{', '.join(sorted(IOPS_TYPES))} do); leave --iops out or give "
                               "--volume-type")
        if request.throughput is not None and volume_type not in THROUGHPUT_TYPES:
            raise self.problem(f"--throughput: a {volume_type} volume takes no throughput "
                               "setting (only gp3 does); leave --throughput out or give "
                               "--volume-type gp3")
        iops = request.iops if request.iops is not None else shape.iops
        if volume_type in ("io1", "io2") and iops is None:
            raise self.problem(f"a {volume_type} volume needs its IOPS: give --iops")
        dropped = [f"{what} {value}" for what, value, takes in (
            ("IOPS", shape.iops, IOPS_TYPES), ("MiB/s throughput", shape.throughput,
                                               THROUGHPUT_TYPES))
            if value is not None and volume_type not in takes]
        if dropped:
            self.log.warning(f"snapshot {snapshot.snapshot_id}: its volume had "
                             f"{' and '.join(dropped)}, which a {volume_type} volume does not "
                             "take: the new volume has the type's own")
        size = request.size_gib if request.size_gib is not None else max(
            snapshot.size_gib, shape.size_gib or 0)
        if size < snapshot.size_gib:
            raise self.problem(f"--size {size} is smaller than snapshot {snapshot.snapshot_id} "
                               f"({snapshot.size_gib} GiB): a volume is at least its "
                               "snapshot's size")
        return VolumeSpec(
            snapshot_id=snapshot.snapshot_id, zone=zone, volume_type=volume_type,
            size_gib=size, iops=iops if volume_type in IOPS_TYPES else None,
            throughput=((request.throughput if request.throughput is not None
                         else shape.throughput) if volume_type in THROUGHPUT_TYPES else None),
            kms_key_id=request.kms_key_id,
            tags=self.volume_tags(snapshot, restore_id, claim),
            client_token=f"{restore_id}-{snapshot.snapshot_id}"[:64])

    def volume_tags(self, snapshot: SnapshotInfo, restore_id: str,
                    claim: ClaimRestore | None) -> dict[str, str]:
        """Provenance, the claim's CSI tags (so the job backs the restored claim up), the
        user's tags; never the job's ownership tags."""
        base = snapshot.claim_text or snapshot.name.rsplit("-", 3)[0] or snapshot.volume_id
        tags = {"Name": f"{base}-restored"[:256], RESTORED_FROM_TAG: snapshot.snapshot_id,
                RESTORED_FROM_VOLUME_TAG: snapshot.volume_id, RESTORED_FOR_JOB_TAG: self.job,
                RESTORE_ID_TAG: restore_id}
        if claim is not None:
            tags.update({RESTORED_CLAIM_TAG: f"{claim.namespace}/{claim.claim_name}",
                         PVC_NAMESPACE: claim.namespace, PVC_NAME: claim.claim_name,
                         PV_NAME: claim.pv_name})
            cluster = snapshot.tags.get(CLUSTER_TAG)
            if cluster:
                tags[f"kubernetes.io/cluster/{cluster}"] = "owned"
        for key, value in self.request.tags.items():
            if key in tags:
                raise self.problem(f"--tag {key}: molibackup sets that tag itself (it records "
                                   "where the volume comes from)")
            tags[key] = value
        return tags

    def claim_target(self, snapshots: Sequence[SnapshotInfo], zone: str
                     ) -> ClaimRestore | None:
        """The claim the manifests bind, when the restore is a claim's."""
        request = self.request
        original = snapshots[0].claim if len(snapshots) == 1 else None
        if request.manifest is None:
            return None
        namespace = request.namespace or (original[0] if original else None)
        name = request.claim_name or (original[1] if original else None)
        if namespace is None or name is None:
            raise self.problem("--manifest writes a claim's PersistentVolume and claim, and "
                               f"snapshot {snapshots[0].snapshot_id} is of no claim: give "
                               "--namespace and --claim-name")
        return ClaimRestore(namespace=namespace, claim_name=name, volume_id="",
                            zone=zone, size_gib=0, restore_id="",
                            snapshot_id=snapshots[0].snapshot_id,
                            storage_class=request.storage_class or "",
                            fs_type=request.fs_type)

    def attach_devices(self, where: Where, planned: list[Planned], zone: str) -> list[Planned]:
        """Refused before anything is made when the instance is in another zone; devices
        chosen: --device, the recorded one on that instance, else the first free."""
        instance_id = self.request.attach
        if instance_id is None:
            return planned
        try:
            reservations = where.client.describe_instances(
                InstanceIds=[instance_id])["Reservations"]
        except AwsError as exc:
            if exc.code.startswith("InvalidInstanceID"):
                raise self.problem(f"--attach {instance_id}: no such instance in "
                                   f"{where.region}") from None
            raise
        raw = next((i for r in reservations for i in r["Instances"]), None)
        if raw is None:
            raise self.problem(f"--attach {instance_id}: no such instance in {where.region}")
        instance_zone = raw.get("Placement", {}).get("AvailabilityZone")
        if instance_zone != zone:
            raise self.problem(f"--attach {instance_id}: the instance is in {instance_zone}, "
                               f"the volume would be in {zone}: a volume attaches only in its "
                               "own zone (give --availability-zone "
                               f"{instance_zone})")
        taken = [str(m.get("DeviceName", "")) for m in raw.get("BlockDeviceMappings", [])]
        chosen = []
        for item in planned:
            shape = item.snapshot.shape
            device = self.request.device or free_device(
                taken, shape.device_on(instance_id) if shape else None)
            if device is None:
                raise self.problem(f"--attach {instance_id}: no free device /dev/sd[f-p] left")
            taken.append(device)
            chosen.append(replace(item, device=device))
        return chosen
