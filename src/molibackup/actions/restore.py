"""`molibackup restore`: a volume, a claim (with its PV and PVC), or an instance's set of
volumes, from the job's snapshots or from its copy in another region.

Exit status: 0 restored (with --dry-run: a restore that would work), 1 a command-line or
config problem (nothing was changed), 2 the restore failed, 75 waiting for the archive tier
(run the same command again later).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from string import ascii_lowercase
from typing import Any

from molibackup.actions.base import Command, Invocation, Outcome, Status
from molibackup.actions.options import duration, positive
from molibackup.actions.targets import (
    add_target_arguments,
    claim_name,
    job_contexts,
    namespace_name,
    object_name,
)
from molibackup.ebs.permissions import RESTORE, actions
from molibackup.ebs.restore.request import Planned, RestoreRequest, RestoreResult
from molibackup.ebs.restore.restoring import restore
from molibackup.errors import JobError, Refusal, UsageError

#: What a restore calls (the restore role of docs/reference/iam.md grants exactly these).
PERMISSIONS = actions(RESTORE)
VOLUME_TYPES = ("gp3", "gp2", "io2", "io1", "st1", "sc1", "standard")
RESERVED_TAG = re.compile(r"^(aws:|molibackup:|CreatedBy$)")


def tag(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    if RESERVED_TAG.match(key):
        raise argparse.ArgumentTypeError(f"{key!r}: tags starting with aws: or molibackup:, "
                                         "and CreatedBy, are not yours to set on a restore")
    if len(key) > 128 or len(value) > 256:
        raise argparse.ArgumentTypeError(f"{text!r}: a tag key has at most 128 characters, "
                                         "a value 256")
    return key, value


def identifier(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: a restore id is 1 to 40 letters, digits, "
                                         "'.', '_' and '-'")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--volume", metavar="VOL", help="the newest backup of this volume")
    which.add_argument("--claim", metavar="NAMESPACE/NAME", type=claim_name,
                       help="the newest backup of this Kubernetes claim's volume")
    which.add_argument("--instance", metavar="ID",
                       help="every volume the job snapshotted of this instance, from one run")
    which.add_argument("--snapshot", metavar="SNAP", help="this snapshot of the job")
    which.add_argument("--claims", metavar="NAMESPACE", type=namespace_name,
                       help="every claim of this namespace the job backs up, all from one "
                            "run: the newest (at or before --at) that holds them all; with "
                            "--manifest")
    parser.add_argument("--at", metavar="TIME",
                        help="the newest backup started at or before TIME: ISO 8601 "
                             "(2026-11-30T04:00Z; without offset, in the job's time zone) or "
                             "a duration meaning that long ago (36h, 2d)")
    add_target_arguments(parser, "to restore in")
    parser.add_argument("--from-region", metavar="REGION",
                        help="restore from the job's copy in this copy_to destination")
    parser.add_argument("--availability-zone", metavar="AZ",
                        help="the new volume's zone (default: the recorded one)")
    parser.add_argument("--volume-type", choices=VOLUME_TYPES,
                        help="default: the recorded type")
    parser.add_argument("--iops", type=positive, help="default: the recorded IOPS")
    parser.add_argument("--throughput", type=positive, metavar="MIB_S",
                        help="default: the recorded throughput (gp3)")
    parser.add_argument("--size", type=positive, metavar="GIB",
                        help="at least the snapshot's size (its default)")
    parser.add_argument("--kms-key-id", metavar="KEY", help="encrypt the volume with this key")
    parser.add_argument("--tag", action="append", type=tag, default=[], metavar="KEY=VALUE",
                        help="one more tag on the new volume(s) (repeatable)")
    parser.add_argument("--attach", metavar="INSTANCE",
                        help="attach the new volume(s) to this instance (same zone)")
    parser.add_argument("--device", metavar="DEV",
                        help="the device name with --attach (default: the recorded one, else "
                             "the first free /dev/sd[f-p])")
    add_manifest_arguments(parser)


def add_manifest_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a claim's manifests, and the rest of the command's own."""
    parser.add_argument("--manifest", metavar="FILE",
                        help="write the claim's PersistentVolume and PersistentVolumeClaim "
                             "to FILE ('-': standard output) for kubectl apply -f")
    parser.add_argument("--claim-name", type=object_name, metavar="NAME",
                        help="the restored claim's name (default: the original's)")
    parser.add_argument("--namespace", type=namespace_name, metavar="NS",
                        help="the restored claim's namespace (default: the original's)")
    parser.add_argument("--storage-class", type=object_name, metavar="NAME",
                        help="the storage class of the PV and claim (default: none, \"\")")
    parser.add_argument("--fs-type", default="ext4", choices=("ext4", "xfs", "ext3", "btrfs"),
                        help="the volume's filesystem, for the PV (default: ext4)")
    parser.add_argument("--restore-id", type=identifier, metavar="ID",
                        help="name this restore (default: derived from job, snapshots, zone "
                             "and claim); the same id finds the volumes it made")
    parser.add_argument("--archive-days", type=positive, default=1, metavar="DAYS",
                        help="days an archived snapshot stays restored (default 1)")
    waiting = parser.add_mutually_exclusive_group()
    waiting.add_argument("--wait-timeout", type=duration, metavar="DURATION",
                         help="how long to wait for the volume (default 15m)")
    waiting.add_argument("--no-wait", action="store_true",
                         help="return once the volume is created")
    parser.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS,
                        help="say what would be restored, change nothing")
    parser.add_argument("--as", dest="as_", choices=["volumes", "volumesnapshots"],
                        default="volumes",
                        help="volumes (default): make the EBS volume(s); volumesnapshots: "
                             "make none, and write with --manifest a VolumeSnapshotContent, "
                             "a VolumeSnapshot and a claim restoring from it, for each claim "
                             "(the EBS CSI driver makes the volume where the pod lands)")
    parser.add_argument("--output", choices=["text", "json"], default="text",
                        help="a summary (default) or a JSON document, on standard output")


def request_from(args: argparse.Namespace) -> RestoreRequest:
    """The request, or UsageError for flags that do not go together."""
    combinations = [
        (args.device and not args.attach, "--device needs --attach"),
        (args.no_wait and args.attach, "--attach needs the volume available: leave out "
                                       "--no-wait"),
        (args.at and args.snapshot, "--at chooses among snapshots: leave it out with "
                                    "--snapshot"),
        (args.instance and args.manifest, "--manifest is for a claim's volume, not an "
                                          "instance's set"),
        (args.instance and args.size, "--size applies to one volume: leave it out with "
                                      "--instance"),
        (args.instance and args.device, "--device applies to one volume; an instance's "
                                        "volumes get their recorded devices"),
        (not args.manifest and (args.claim_name or args.namespace or args.storage_class),
         "--claim-name, --namespace and --storage-class are for --manifest"),
        (args.manifest == "-" and args.output == "json",
         "--manifest - and --output json both want standard output: write the manifest to a "
         "file"),
        (args.claims and not args.manifest, "--claims writes each claim's PersistentVolume "
                                            "and claim: give --manifest FILE (or -)"),
        (args.claims and (args.claim_name or args.size or args.attach or args.device),
         "--claim-name, --size, --attach and --device apply to one volume: leave them out "
         "with --claims (--namespace moves every claim)"),
    ]
    if args.as_ == "volumesnapshots":
        volume_only = [flag for flag, given in (
            ("--attach", args.attach), ("--device", args.device), ("--iops", args.iops),
            ("--throughput", args.throughput), ("--volume-type", args.volume_type),
            ("--availability-zone", args.availability_zone),
            ("--kms-key-id", args.kms_key_id), ("--tag", args.tag)) if given]
        combinations += [
            (bool(volume_only), f"{', '.join(volume_only)}: --as volumesnapshots makes no "
                                "volume (the EBS CSI driver makes it, with the storage "
                                "class's settings): leave them out, or restore --as volumes"),
            (not args.claim and not args.claims,
             "--as volumesnapshots restores claims: give --claim NS/NAME or --claims NS"),
            (not args.manifest, "--as volumesnapshots writes its objects with --manifest FILE "
                                "(or - for standard output)"),
        ]
    for refused, why in combinations:
        if refused:
            raise UsageError(why)
    return RestoreRequest(
        volume_id=args.volume, claim=args.claim, claims_namespace=args.claims,
        instance_id=args.instance,
        snapshot_id=args.snapshot, at=args.at, from_region=args.from_region,
        zone=args.availability_zone, volume_type=args.volume_type, iops=args.iops,
        throughput=args.throughput, size_gib=args.size, kms_key_id=args.kms_key_id,
        tags=dict(args.tag), attach=args.attach, device=args.device, manifest=args.manifest,
        claim_name=args.claim_name, namespace=args.namespace,
        storage_class=args.storage_class, fs_type=args.fs_type, restore_id=args.restore_id,
        wait=not args.no_wait, **({"wait_timeout": args.wait_timeout}
                                  if args.wait_timeout else {}),
        archive_days=args.archive_days, dry_run=bool(getattr(args, "dry_run", False)),
        as_snapshots=args.as_ == "volumesnapshots")


def run(invocation: Invocation) -> Outcome:
    args = invocation.args
    names = [*args.job, *args.command_jobs]
    if len(names) != 1:
        raise UsageError("restore needs exactly one --job NAME: the job whose snapshots to "
                         "restore")
    request = request_from(args)
    contexts = [placed.context for placed in job_contexts(invocation, args.account, args.region)]
    if not contexts:
        raise Refusal(f"{invocation.config.path}: job {names[0]} makes no EBS snapshots "
                      "(or is disabled, or has no such --account/--region): nothing to "
                      "restore")
    if len(contexts) > 1:
        raise UsageError(f"job {names[0]} works in {len(contexts)} accounts and regions: say which "
                         "with --account and --region")
    context = contexts[0]
    log = context.log
    if request.manifest not in (None, "-"):
        check_writable(Path(str(request.manifest)))
    interruption = invocation.interruption
    with interruption.installed():
        try:
            result = restore(context, request)
        except JobError as exc:
            log.error(f"job {context.job.name}: {exc}")
            return Outcome(Status.FAILED, interrupted_by=interruption.signal_number)
    if result.manifest is not None and request.manifest and not request.dry_run:
        write_manifest(request.manifest, result.manifest, log)
    result.next_step = result.next_step or next_step(result, request)
    show(result, request, args.output, log)
    if interruption.requested:
        return Outcome(Status.FAILED, interrupted_by=interruption.signal_number)
    if result.waiting_for_archive:
        return Outcome(Status.COME_BACK_LATER)
    return Outcome(Status.OK)


def check_writable(path: Path) -> None:
    """Refused before anything is made: a manifest that could not be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise Refusal(f"--manifest {path}: is a directory; give a file name (or - for "
                      "standard output)")
    if not folder.is_dir():
        raise Refusal(f"--manifest {path}: no such directory {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise Refusal(f"--manifest {path}: not writable; give another path (or - for "
                      "standard output)")


def write_manifest(where: str, text: str, log: Any) -> None:
    if where == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(where).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise JobError(f"the volume is made, but the manifest could not be written to {where}: "
                       f"{exc.strerror or exc}; run the same restore again with another "
                       "--manifest") from None
    log.info(f"wrote the PersistentVolume and PersistentVolumeClaim to {where}")


def next_step(result: RestoreResult, request: RestoreRequest) -> str:
    if request.dry_run:
        return "run the same command without --dry-run to restore"
    if result.handoffs:
        target = "-" if request.manifest == "-" else request.manifest
        waits = " && ".join(
            f"kubectl wait -n {h.namespace} --for=jsonpath='{{.status.readyToUse}}'=true "
            f"volumesnapshot/{h.snapshot_name} --timeout=5m" for h in result.handoffs)
        return (f"kubectl apply -f {target} && {waits} (the claim binds when a pod uses it; "
                "its storage class must be the EBS CSI driver's, ebs.csi.aws.com)")
    if result.claims and request.manifest:
        target = "the manifest above" if request.manifest == "-" else request.manifest
        namespaces = sorted({c.namespace for c in result.claims})
        deletes = " && ".join(
            f"kubectl delete pvc -n {namespace} "
            + " ".join(c.claim_name for c in result.claims if c.namespace == namespace)
            for namespace in namespaces)
        what = "claim, delete it" if len(result.claims) == 1 else "claims, delete them"
        return (f"kubectl apply -f {target} (to restore over the original {what} first: "
                f"{deletes})")
    if result.attached:
        attached = ", ".join(f"{volume} as {device}" for volume, device in result.attached.items())
        return f"mount it on {request.attach}: {attached} attached"
    return ("attach it: run the same molibackup restore with --attach INSTANCE_ID, or "
            + " && ".join(attach_commands(result)))


def attach_commands(result: RestoreResult) -> list[str]:
    """One `aws ec2 attach-volume` per volume made, each pasteable once INSTANCE_ID is
    the instance's id: the region from the volume's zone, the device it was recorded on."""
    commands = []
    for item in result.planned:
        made = result.volumes.get(item.snapshot.snapshot_id)
        if made is None:
            continue
        shape = item.snapshot.shape
        device = shape.devices[0][1] if shape is not None and shape.devices else "/dev/sdf"
        commands.append(f"aws ec2 attach-volume --region {made.zone.rstrip(ascii_lowercase)} "
                        f"--volume-id {made.volume_id} --instance-id INSTANCE_ID "
                        f"--device {device}")
    return commands


def show(result: RestoreResult, request: RestoreRequest, output: str, log: Any) -> None:
    """On standard output; with the manifest there, the summary goes to the log instead."""
    document = as_document(result, request)
    if output == "json":
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        sys.stdout.flush()
        return
    text = render_text(document)
    if request.manifest == "-":
        for line in text.splitlines():
            log.info(line)
        return
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def as_document(result: RestoreResult, request: RestoreRequest) -> dict[str, Any]:
    return {
        "job": result.job,
        "where": result.region,
        "restore_id": result.restore_id,
        "status": result.status,
        "dry_run": request.dry_run,
        "run_id": result.run_id,
        "volumes": [{
            "snapshot_id": item.snapshot.snapshot_id,
            "snapshot_time": item.snapshot.start_time.isoformat(),
            "source_volume_id": item.snapshot.volume_id,
            "claim": item.snapshot.claim_text,
            "restored_as": (f"{item.claim.namespace}/{item.claim.claim_name}"
                            if item.claim is not None else None),
            "volume_id": (result.volumes[item.snapshot.snapshot_id].volume_id
                          if item.snapshot.snapshot_id in result.volumes else None),
            "state": (result.volumes[item.snapshot.snapshot_id].state
                      if item.snapshot.snapshot_id in result.volumes else None),
            "availability_zone": item.spec.zone,
            "volume_type": item.spec.volume_type,
            "size_gib": item.spec.size_gib,
            "iops": item.spec.iops,
            "throughput": item.spec.throughput,
            "attached_to": attached_to(result, request, item),
            "device": device_of(result, request, item),
        } for item in result.planned],
        "claim": ({"namespace": result.claim.namespace, "name": result.claim.claim_name,
                   "persistent_volume": result.claim.pv_name}
                  if result.claim is not None else None),
        "claims": [{"namespace": c.namespace, "name": c.claim_name,
                    "persistent_volume": c.pv_name, "volume_id": c.volume_id,
                    "snapshot_id": c.snapshot_id} for c in result.claims],
        "volume_snapshots": [{
            "namespace": h.namespace, "claim": h.claim_name, "volume_snapshot": h.snapshot_name,
            "volume_snapshot_content": h.content_name, "snapshot_id": h.snapshot_id,
            "snapshot_time": h.start_time, "of_claim": h.source_claim, "size_gib": h.size_gib,
        } for h in result.handoffs],
        "manifest": request.manifest if result.manifest is not None else None,
        "next_step": result.next_step,
    }


def attached_to(result: RestoreResult, request: RestoreRequest, item: Planned) -> str | None:
    """The instance the volume is attached to (or, in a dry run, would be)."""
    return request.attach if device_of(result, request, item) else None


def device_of(result: RestoreResult, request: RestoreRequest, item: Planned) -> str | None:
    """The device EC2 shows for the attachment; in a dry run, the device planned."""
    if request.dry_run:
        return item.device
    made = result.volumes.get(item.snapshot.snapshot_id)
    return result.attached.get(made.volume_id) if made is not None else None


def render_text(document: dict[str, Any]) -> str:
    run = f", run {document['run_id']}" if document["run_id"] else ""
    lines = [f"restore {document['restore_id']} of job {document['job']} in "
             f"{document['where']}{run}: {document['status']}"]
    for volume in document["volumes"]:
        made = volume["volume_id"] or "(not made)"
        claim = f", claim {volume['claim']}" if volume["claim"] else ""
        attached = (f", attached to {volume['attached_to']} as {volume['device']}"
                    if volume["attached_to"] else "")
        lines.append(f"  {volume['snapshot_id']} ({volume['snapshot_time']}, volume "
                     f"{volume['source_volume_id']}{claim}) -> {made} in "
                     f"{volume['availability_zone']} ({volume['volume_type']}, "
                     f"{volume['size_gib']} GiB){attached}"
                     + (f": {volume['state']}" if volume["state"] else ""))
    lines += [f"  {v['snapshot_id']} ({v['snapshot_time']}, claim {v['of_claim']}) -> "
              f"VolumeSnapshot {v['namespace']}/{v['volume_snapshot']} and claim "
              f"{v['namespace']}/{v['claim']} ({v['size_gib']} GiB)"
              for v in document["volume_snapshots"]]
    lines.append(f"next: {document['next_step']}")
    return "\n".join(lines)


COMMAND = Command(
    help="make a volume (or a claim's PV and PVC, or an instance's set) from the job's "
         "snapshots, or from its copy in another region",
    description="Restores the newest completed backup (or the one at --at, or --snapshot) of "
                "a volume, a Kubernetes claim or an instance into new volume(s), once however "
                "often it is run. Exit status 0 restored, 1 a command-line or config "
                "problem (nothing changed), 2 the restore failed, 75 the snapshot is coming "
                "back from the archive tier: run the same command again later.",
    add_arguments=add_arguments, run=run,
    job_help="the job whose snapshots to restore (exactly one)")
