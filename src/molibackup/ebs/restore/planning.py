"""Deciding a restore: which snapshots, where (the job's region or a copy_to destination),
the new volumes' zone, type, size and tags, the instance to attach to. Every refusal is
made here, before the first change; nothing here changes anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from molibackup.aws.clients import caller_account, ec2_client
from molibackup.ebs.catalog import (
    SnapshotInfo,
    describe_snapshot,
    existing_volumes,
    job_copies,
    job_snapshots,
)
from molibackup.ebs.claims import RESTORED_UNUSED, claim_state
from molibackup.ebs.options import CopyTarget
from molibackup.ebs.restore import choosing
from molibackup.ebs.restore.manifests import ClaimRestore
from molibackup.ebs.restore.request import Decision, Planned, Step, Where
from molibackup.ebs.selection import Selector
from molibackup.ebs.tags import (
    CLUSTER_TAG,
    CREATED_BY,
    JOB_TAG,
    PV_NAME,
    PVC_NAME,
    PVC_NAMESPACE,
    RESTORE_ID_TAG,
    RESTORED_CLAIM_TAG,
    RESTORED_FOR_JOB_TAG,
    RESTORED_FROM_TAG,
    RESTORED_FROM_VOLUME_TAG,
    VolumeShape,
    tag_dict,
)
from molibackup.ebs.volumes import IOPS_TYPES, THROUGHPUT_TYPES, VolumeSpec, free_device
from molibackup.errors import AwsError, Refusal


class Planner(Step):
    """Decides what a restore makes, and makes every refusal, reading only."""

    def problem(self, message: str) -> Refusal:
        return Refusal(f"job {self.job}: restore: {message}")

    def decide(self) -> Decision:
        where = self.where()
        snapshots, run_id = self.choose(where)
        restore_id, planned, claim = self.plan(where, snapshots)
        planned = self.attach_devices(where, planned, planned[0].spec.zone)
        return Decision(where, snapshots, run_id, restore_id, planned, claim)

    def where(self) -> Where:
        options = self.context.job.options
        session = self.context.job.session()
        if self.request.from_region is None:
            return Where(session, ec2_client(session, options.aws_region, self.settings),
                         options.aws_region, options.aws_region, None)
        targets = [t for t in options.copy_to if t.region == self.request.from_region]
        if not targets:
            regions = ", ".join(t.region for t in options.copy_to) or "none"
            raise self.problem(f"--from-region {self.request.from_region} is not one of the "
                               f"job's copy_to destinations (they are: {regions})")
        if len(targets) > 1:
            raise self.problem(f"the job copies to {self.request.from_region} in several "
                               f"accounts ({', '.join(t.describe() for t in targets)}): "
                               "restore from one with --snapshot and its id there")
        target: CopyTarget = targets[0]
        account = caller_account(session, options.aws_region)
        copy_session = self.context.job.destination(session, target)
        return Where(copy_session, ec2_client(copy_session, target.region, self.settings),
                     target.region, target.describe(), (options.aws_region, account))

    def catalog(self, where: Where) -> list[SnapshotInfo]:
        if where.copy_of is None:
            return job_snapshots(where.client, self.job)
        return job_copies(where.client, self.job, *where.copy_of)

    def moment(self) -> datetime | None:
        if self.request.at is None:
            return None
        try:
            return choosing.parse_moment(self.request.at, self.now,
                                         self.context.job.options.policy.timezone)
        except ValueError as exc:
            raise self.problem(f"--at: {exc}") from None

    def choose(self, where: Where) -> tuple[list[SnapshotInfo], str | None]:
        """The snapshots to restore, and for an instance the run they come from."""
        request, at = self.request, self.moment()
        if request.snapshot_id is not None:
            return [self.named_snapshot(where)], None
        snapshots = self.catalog(where)
        when = f" started at or before {at.isoformat()}" if at else ""
        if request.instance_id is not None:
            runs = choosing.runs_of_instance(snapshots, request.instance_id)
            if not runs:
                raise self.problem(f"the job has no snapshot of instance {request.instance_id} "
                                   f"in {where.label}: check the instance id and the job")
            run = choosing.newest_complete_run(runs, at)
            if run is None:
                raise self.problem(f"no run of the job snapshotted every volume of "
                                   f"{request.instance_id} to completion{when}")
            return list(run.snapshots), run.run_id
        if request.claims_namespace is not None:
            return self.namespace_run(snapshots, where, at)
        if request.volume_id is not None:
            mine = [s for s in snapshots if s.volume_id == request.volume_id]
            what = f"volume {request.volume_id}"
        else:
            assert request.claim is not None
            what = f"claim {request.claim[0]}/{request.claim[1]}"
            mine = self.claim_data([s for s in snapshots if s.claim == request.claim], where,
                                   what)
        if not mine:
            raise self.problem(f"the job has no snapshot of {what} in {where.label}: check "
                               "it with `molibackup snapshots`")
        chosen = choosing.newest_completed(mine, at)
        if chosen is None:
            raise self.problem(f"none of the job's {len(mine)} snapshot(s) of {what} is "
                               f"completed{when}")
        return [chosen], None

    def namespace_run(self, snapshots: list[SnapshotInfo], where: Where, at: datetime | None
                      ) -> tuple[list[SnapshotInfo], str]:
        """One snapshot of every claim of the namespace, all from one run: the newest run
        (at or before --at) that holds them all."""
        namespace = str(self.request.claims_namespace)
        mine = self.claim_data([s for s in snapshots if s.claim and s.claim[0] == namespace],
                               where, f"namespace {namespace}")
        claims = self.claims_of(namespace, where) or sorted(
            {str(s.claim_text) for s in choosing.claim_runs(mine, namespace)[0].snapshots}
            if choosing.claim_runs(mine, namespace) else [])
        if not claims:
            raise self.problem(f"the job backs up no claim of namespace {namespace} in "
                               f"{where.label}: check the namespace with `molibackup "
                               "snapshots`")
        when = f" at or before {at.isoformat()}" if at else ""
        moment = choosing.namespace_moment(choosing.claim_runs(mine, namespace, at), claims)
        if moment.taken is None:
            newest_lacking = moment.passed_over[0][1] if moment.passed_over else tuple(claims)
            raise self.problem(f"no run{when} holds a completed snapshot of every claim of "
                               f"namespace {namespace}: missing "
                               f"{', '.join(newest_lacking)} (in the newest run)")
        for run, lacking in moment.passed_over:
            self.log.info(f"run {run.run_id} ({run.start_time.isoformat()}) passed over: it "
                          f"has no completed snapshot of {', '.join(lacking)}")
        taken = moment.taken
        self.log.info(f"namespace {namespace}: {len(taken.snapshots)} claim(s) from run "
                      f"{taken.run_id} ({taken.start_time.isoformat()}), the newest{when} "
                      "that holds them all")
        return list(taken.snapshots), taken.run_id

    def claims_of(self, namespace: str, where: Where) -> list[str]:
        """The claims of the namespace the job backs up now (its selection, less the
        restored copies never used); none when the restore reads a copy region (the home
        region's cluster may be what was lost) or the namespace is gone."""
        if where.copy_of is not None:
            return []
        job = self.context.job
        if job.options.claims is None:
            return []
        selector = Selector(job.options, where.client, self.log, job_name=job.name)
        selector.select(None)
        return sorted({volume.name for volume, state in selector.claim_volumes
                       if volume.claim is not None and volume.claim.namespace == namespace
                       and state != RESTORED_UNUSED})

    def claim_data(self, snapshots: list[SnapshotInfo], where: Where, what: str
                   ) -> list[SnapshotInfo]:
        """The claim's snapshots, less those of a restored copy never attached (claims.py):
        its data is the snapshot it came from, not the claim's."""
        if where.copy_of is not None or not snapshots:
            return snapshots  # copies: their volumes are in the source region
        attached_once = {s.volume_id for s in snapshots if s.shape and s.shape.devices}
        suspects = {s.volume_id for s in snapshots if s.volume_id not in attached_once}
        volumes = existing_volumes(where.client, suspects) if suspects else {}
        unused = {volume_id for volume_id, raw in volumes.items() if claim_state(
            tag_dict(raw.get("Tags")), any(a.get("State") == "attached"
                                           for a in raw.get("Attachments", [])),
            volume_id in attached_once) == RESTORED_UNUSED}
        for volume_id in sorted(unused):
            passed = sum(s.volume_id == volume_id for s in snapshots)
            self.log.warning(f"{what}: passed over {passed} snapshot(s) of {volume_id}, a "
                             "volume a restore made and that was never attached (its data is "
                             "the snapshot it came from, not the claim's)")
        kept = [s for s in snapshots if s.volume_id not in unused]
        # A run that found the claim on several volumes took the attached one as the claim
        # (it is the live one); the others of that run are not the claim's newest.
        attached_runs = {s.run_id for s in kept if s.run_id and s.shape and s.shape.devices}
        return [s for s in kept if s.run_id not in attached_runs
                or (s.shape is not None and s.shape.devices)]

    def named_snapshot(self, where: Where) -> SnapshotInfo:
        snapshot_id = str(self.request.snapshot_id)
        found = describe_snapshot(where.client, snapshot_id)
        if found is None:
            raise self.problem(f"snapshot {snapshot_id} does not exist in {where.label}")
        tags = found.tags
        if tags.get(CREATED_BY[0]) != CREATED_BY[1]:
            whose = "it was made by hand or by another tool (no CreatedBy=molibackup tag)"
        elif JOB_TAG not in tags:
            whose = "it was made by the original molibackup (no job tag; see adopt_untagged)"
        elif tags[JOB_TAG] != self.job:
            whose = f"it belongs to job {tags[JOB_TAG]}"
        elif where.copy_of is not None and found.source_snapshot_id is None:
            whose = f"it is not a copy the job made in {where.label}"
        else:
            if not found.completed:
                raise self.problem(f"snapshot {snapshot_id} is {found.state}, not completed")
            return found
        raise self.problem(f"snapshot {snapshot_id} is not a snapshot of job {self.job}: "
                           f"{whose}; restore only the job's own")

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
