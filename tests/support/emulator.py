"""The EC2 emulator (moto in server mode) and direct access to its state for test set-up."""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import socket
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import moto.backends as moto_backends
import moto.core.responses as moto_responses
import moto.core.serialize as moto_serialize
from moto.backends import get_backend
from moto.core.responses import ActionResult
from moto.ebs.models import EBSBackend as DirectBackend
from moto.ebs.models import EBSSnapshot, ebs_backends
from moto.ebs.responses import EBSResponse
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot
from moto.ec2.models.tags import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.utils import random_snapshot_id
from moto.server import ThreadedMotoServer
from moto.ssm.models import Command, SimpleSystemManagerBackend

ACCOUNT = "123456789012"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Emulator:
    """A moto server on loopback, reached over real HTTP by real boto3 clients."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> Emulator:
        honour_create_snapshots_parameters()
        copy_snapshots_shared_by_other_accounts()
        describe_locked_snapshots()
        give_snapshots_their_volumes_blocks()
        page_block_listings()
        run_commands_as_told()
        describe_fast_snapshot_restores()
        list_blocks_changed_either_way()
        route_requests_once()
        remember_attribute_names()
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        LOCKS.clear()
        VOLUME_DATA.clear()
        COMMAND_OUTCOMES.clear()
        SENT_COMMANDS.clear()
        FAST_RESTORES.clear()

    @staticmethod
    def write_volume(region: str, volume_id: str, image: bytes, at: int = 0) -> None:
        """Write bytes into a volume at a byte offset, as a filesystem tool would; the
        snapshots made of it from then on hold its written blocks (see
        `give_snapshots_their_volumes_blocks`)."""
        blocks = VOLUME_DATA.setdefault((ACCOUNT, region, volume_id), {})
        position = at
        while position < at + len(image):
            index, within = divmod(position, EC2_BLOCK_SIZE)
            block = bytearray(blocks.get(index, b"\0" * EC2_BLOCK_SIZE))
            chunk = image[position - at: position - at + EC2_BLOCK_SIZE - within]
            block[within:within + len(chunk)] = chunk
            if any(block):
                blocks[index] = bytes(block)
            else:
                blocks.pop(index, None)
            position += len(chunk)

    @staticmethod
    def snapshot_blocks(region: str, snapshot_id: str) -> Any:
        """A snapshot's blocks as the EBS direct APIs hold them."""
        return ebs_backends[ACCOUNT][region].snapshots[snapshot_id]

    def corrupt_block(self, region: str, snapshot_id: str, index: int) -> None:
        """Change a block's data and keep its checksum: what a read must catch."""
        block = self.snapshot_blocks(region, snapshot_id).blocks[index]
        data = bytearray(block.block_data)
        data[len(data) // 2] ^= 0xFF
        block.block_data = bytes(data)

    @staticmethod
    def fast_restore(region: str, snapshot_id: str, zone: str, state: str = "enabled") -> None:
        """Fast snapshot restore for a snapshot in a zone, as EnableFastSnapshotRestores
        would leave it (the emulator has none)."""
        FAST_RESTORES[(ACCOUNT, region, snapshot_id, zone)] = state

    @staticmethod
    def command_outcome(instance_id: str, status: str = "Success", output: str = "",
                        in_progress_polls: int = 0) -> None:
        """How the commands sent to an instance end: after `in_progress_polls` answers
        InProgress, `status` (Failed, TimedOut, Cancelled ...) with `output`."""
        COMMAND_OUTCOMES[instance_id] = (status, output, in_progress_polls)

    @staticmethod
    def sent_commands() -> list[dict[str, Any]]:
        """Every SendCommand the emulator took, in order."""
        return list(SENT_COMMANDS)

    @staticmethod
    def lock(region: str, snapshot_id: str, mode: str = "governance") -> None:
        """Lock a snapshot as LockSnapshot would (the emulator does not implement it)."""
        LOCKS[(ACCOUNT, region, snapshot_id)] = mode

    # Set-up the EC2 API cannot express: the emulator always makes snapshots "now".

    @staticmethod
    def backend(region: str, account: str = ACCOUNT) -> Any:
        return get_backend("ec2")[account][region]

    def set_snapshot_age(self, region: str, snapshot_id: str, days: float,
                         now: datetime | None = None, account: str = ACCOUNT) -> None:
        now = now or datetime.now(UTC)
        snapshot = self.backend(region, account).snapshots[snapshot_id]
        snapshot.start_time = (now - timedelta(days=days)).replace(tzinfo=None)

    def set_snapshot_state(self, region: str, snapshot_id: str, state: str,
                           account: str = ACCOUNT) -> None:
        self.backend(region, account).snapshots[snapshot_id].status = state


#: Snapshot locks set by tests: (account, region, snapshot id) -> lock state.
LOCKS: dict[tuple[str, str, str], str] = {}


def describe_locked_snapshots() -> None:
    """Teach the emulator DescribeLockedSnapshots, which it lacks: it answers the locks the
    tests set with `Emulator.lock` (real EC2 answers those LockSnapshot made)."""
    def describe_locked_snapshots_response(self: Any) -> Any:
        wanted = set(self._get_param("SnapshotIds", []))
        account, region = self.current_account, self.region
        return ActionResult({"Snapshots": [
            {"OwnerId": account, "SnapshotId": snapshot_id, "LockState": state,
             "LockDuration": 1}
            for (lock_account, lock_region, snapshot_id), state in sorted(LOCKS.items())
            if (lock_account, lock_region) == (account, region)
            and (not wanted or snapshot_id in wanted)]})

    ElasticBlockStore.describe_locked_snapshots = (  # type: ignore[attr-defined]
        describe_locked_snapshots_response)


#: EC2's snapshot block size (the emulator's EBS backend answers 512).
EC2_BLOCK_SIZE = 524288
#: What tests wrote into volumes: (account, region, volume id) -> {block index: data}.
VOLUME_DATA: dict[tuple[str, str, str], dict[int, bytes]] = {}


def give_snapshots_their_volumes_blocks() -> None:
    """Teach the emulator what real EC2 does: a snapshot holds its volume's blocks. Its EC2
    snapshots have none (the EBS direct APIs live in another backend): a snapshot of a volume
    that a test wrote into (`Emulator.write_volume`) gets those blocks, with their SHA-256,
    in EC2's block size. Volumes nobody wrote into give snapshots without blocks."""
    original = EBSBackend.create_snapshot
    if getattr(original, "gives_blocks", False):
        return

    def create_snapshot(self: Any, volume_id: str, *args: Any, **kwargs: Any) -> Any:
        snapshot = original(self, volume_id, *args, **kwargs)
        data = VOLUME_DATA.get((self.account_id, self.region_name, volume_id))
        if data is not None:
            blocks = EBSSnapshot(self.account_id, snapshot)
            blocks.block_size = EC2_BLOCK_SIZE
            blocks.status = "completed"
            for index, block in sorted(data.items()):
                checksum = base64.b64encode(hashlib.sha256(block).digest()).decode()
                blocks.put_block(index, block, checksum, "SHA256", len(block))
            ebs_backends[self.account_id][self.region_name].snapshots[snapshot.id] = blocks
        return snapshot

    create_snapshot.gives_blocks = True  # type: ignore[attr-defined]
    EBSBackend.create_snapshot = create_snapshot  # type: ignore[method-assign]


BLOCK_PAGE = 100  # the emulator answers whole listings; real EC2 pages them


def page_block_listings() -> None:
    """ListSnapshotBlocks and ListChangedBlocks answer in pages of at most BLOCK_PAGE blocks
    (and MaxResults), with a NextToken, as real EC2 does: the emulator answers them whole."""
    if getattr(EBSResponse.list_snapshot_blocks, "pages", False):
        return
    listings = {"list_snapshot_blocks": "Blocks", "list_changed_blocks": "ChangedBlocks"}
    for method, key in listings.items():
        original = getattr(EBSResponse, method)

        def paged(self: Any, original: Any = original, key: str = key) -> Any:
            try:
                answer = original(self)
            except KeyError:  # an EC2 snapshot with no blocks: EC2 lists none, no error
                snapshot = get_backend("ec2")[self.current_account][self.region].snapshots[
                    self._get_param("SnapshotId") or self._get_param("SecondSnapshotId")]
                answer = ActionResult({key: [], "VolumeSize": snapshot.volume.size,
                                       "BlockSize": EC2_BLOCK_SIZE})
            items = sorted(answer.result[key], key=lambda b: b["BlockIndex"])
            size = min(int(self._get_param("MaxResults") or BLOCK_PAGE), BLOCK_PAGE)
            start = int(self._get_param("NextToken") or 0)
            page = {**answer.result, key: items[start:start + size]}
            if start + size < len(items):
                page["NextToken"] = str(start + size)
            return ActionResult(page)

        paged.pages = True  # type: ignore[attr-defined]
        setattr(EBSResponse, method, paged)


#: Fast snapshot restores set by tests: (account, region, snapshot, zone) -> state.
FAST_RESTORES: dict[tuple[str, str, str, str], str] = {}


def describe_fast_snapshot_restores() -> None:
    """Teach the emulator DescribeFastSnapshotRestores, which it lacks: it answers the
    restores tests set with `Emulator.fast_restore` (none by default)."""
    def response(self: Any) -> Any:
        filters = self._filters_from_querystring()
        wanted = set(filters.get("snapshot-id", []))
        return ActionResult({"FastSnapshotRestores": [
            {"SnapshotId": snapshot, "AvailabilityZone": zone, "State": state,
             "OwnerId": account}
            for (account, region, snapshot, zone), state in sorted(FAST_RESTORES.items())
            if (account, region) == (self.current_account, self.region)
            and (not wanted or snapshot in wanted)]})

    ElasticBlockStore.describe_fast_snapshot_restores = response  # type: ignore[attr-defined]


def list_blocks_changed_either_way() -> None:
    """ListChangedBlocks as EC2 answers it: the blocks that differ between the two
    snapshots, those written only in the second included (the emulator lists only the
    first's)."""
    def list_changed_blocks(self: Any, first_snapshot_id: str, second_snapshot_id: str
                            ) -> Any:
        first, second = self.snapshots[first_snapshot_id], self.snapshots[second_snapshot_id]
        changed = {}
        for index in sorted(set(first.blocks) | set(second.blocks)):
            one, two = first.blocks.get(index), second.blocks.get(index)
            if one is None or two is None or one.block_data != two.block_data:
                changed[index] = (one.block_token if one else None,
                                  two.block_token if two else None)
        return changed, second

    DirectBackend.list_changed_blocks = list_changed_blocks  # type: ignore[method-assign]


#: How commands end on an instance: id -> (status, output, InProgress answers first).
COMMAND_OUTCOMES: dict[str, tuple[str, str, int]] = {}
#: Every SendCommand taken: document, parameters, instance ids, comment, command id.
SENT_COMMANDS: list[dict[str, Any]] = []


def run_commands_as_told() -> None:
    """Teach the emulator's SSM what real instances do: a command runs a while and may fail
    or time out (`Emulator.command_outcome`); the emulator makes every one Success at once.
    Every SendCommand is recorded, so tests can prove what was sent, to whom, in which
    order. (The emulator gives a command sent without Targets every instance of the region;
    molibackup always names its InstanceIds.)"""
    if getattr(SimpleSystemManagerBackend.send_command, "recorded", False):
        return
    send = SimpleSystemManagerBackend.send_command

    def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        named = list(kwargs.get("instance_ids") or [])
        command = send(self, *args, **kwargs)
        if named and not kwargs.get("targets"):  # the named instances, not the region's
            command.instance_ids = sorted(set(named))
            command.invocations = [command.invocation_response(i, "aws:runShellScript")
                                   for i in command.instance_ids]
        SENT_COMMANDS.append({"document": command.document_name,
                              "parameters": command.parameters or {},
                              "instance_ids": sorted(command.instance_ids),
                              "comment": command.comment, "command_id": command.command_id})
        return command

    polls: dict[tuple[str, str], int] = {}
    get_invocation = Command.get_invocation

    def told(self: Any, instance_id: str, plugin_name: str | None) -> Any:
        invocation = dict(get_invocation(self, instance_id, plugin_name))
        status, output, in_progress = COMMAND_OUTCOMES.get(instance_id, ("Success", "", 0))
        seen = polls[(self.command_id, instance_id)] = polls.get(
            (self.command_id, instance_id), 0) + 1
        if seen <= in_progress:
            return {**invocation, "Status": "InProgress", "StatusDetails": "InProgress"}
        return {**invocation, "Status": status, "StatusDetails": status,
                "StandardErrorContent": output if status != "Success" else "",
                "StandardOutputContent": output if status == "Success" else ""}

    send_command.recorded = True  # type: ignore[attr-defined]
    SimpleSystemManagerBackend.send_command = send_command  # type: ignore[method-assign]
    Command.get_invocation = told  # type: ignore[method-assign]


def serve() -> None:
    """An emulator in a process of its own (the benchmark runs one per region, as regions are
    servers of their own): prints its URL, then serves until its standard input closes."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    index_tag_lookups()
    emulator = Emulator().start()
    print(emulator.url, flush=True)
    sys.stdin.read()
    emulator.stop()


def route_requests_once() -> None:
    """Let the emulator's server look up what does not change only once.

    For every request moto's server lists its own package directory (to tell a service from
    a host name) and inspects its response class for method names: a few milliseconds each,
    more than most answers take to compute, and all of it on the one interpreter lock that
    every emulated region shares. Both results are fixed for the life of the process.
    """
    modules = tuple(moto_backends.list_of_moto_modules())
    moto_backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    if not hasattr(moto_responses.method_names_from_class, "cache_info"):
        moto_responses.method_names_from_class = functools.cache(  # type: ignore[assignment]
            moto_responses.method_names_from_class)


def remember_attribute_names() -> None:
    """Let the emulator's answer writer work out each attribute's possible names once.

    For every member of every object in an answer, moto's serializer asks six alias
    providers which attribute names it may go by, though the answer depends only on the
    object's class, the member and its shape (with the shape's parent): most of the time of
    writing a DescribeInstances answer. The names are remembered by those; the shapes are
    kept and compared, so an id reused by another shape never finds a stale entry.
    """
    picker = moto_serialize.XFormedAttributePicker
    original = picker.get_possible_keys
    if getattr(original, "remembered", False):
        return
    names: dict[tuple[Any, ...], tuple[Any, Any, tuple[str, ...]]] = {}

    def get_possible_keys(self: Any, context: Any) -> Any:
        shape = context.shape
        parent = getattr(shape, "parent", None)
        key = (type(self), type(context.obj), context.key, id(shape), id(parent))
        entry = names.get(key)
        if entry is None or entry[0] is not shape or entry[1] is not parent:
            entry = (shape, parent, tuple(original(self, context)))
            names[key] = entry
        return entry[2]

    get_possible_keys.remembered = True  # type: ignore[attr-defined]
    picker.get_possible_keys = get_possible_keys  # type: ignore[method-assign]


def index_tag_lookups() -> None:
    """Make the emulator look up a resource's tags by its id instead of scanning every tag.

    moto answers `get_tags` by scanning all tags of the account with regular expressions, so a
    listing of n snapshots costs O(n^2): hours at 100,000 snapshots. The data and the answers
    stay the emulator's own; only the lookup is indexed. Used by the benchmark.
    """
    def get_tags(self: Any) -> list[dict[str, str]]:
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        tags = self.ec2_backend.tags.get(resource_id, {})
        return [{"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
                for key, value in tags.items()]

    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]


def honour_create_snapshots_parameters() -> None:
    """Teach the emulator's CreateSnapshots two parameters real EC2 honours and it ignores:
    `InstanceSpecification.ExcludeDataVolumeIds` (volumes left out) and
    `CopyTagsFromSource=volume` (each snapshot gets its volume's tags, then the request's).
    The emulator runs in this process, so its classes can be extended here."""
    def create_snapshots(self: Any, instance_spec: dict[str, Any], description: str,
                         tags: dict[str, str], copy_tags_from_source: str | None = None
                         ) -> list[Any]:
        instance = self.get_instance(instance_spec["InstanceId"])
        excluded = set(_values(instance_spec, "ExcludeDataVolumeId"))
        skip_boot = str(instance_spec.get("ExcludeBootVolume", False)).lower() == "true"
        snapshots = []
        for device, mapping in instance.get_block_device_mapping:
            if skip_boot and device == instance.root_device_name:
                continue
            if mapping.volume_id in excluded and device != instance.root_device_name:
                continue
            snapshot = self.create_snapshot(mapping.volume_id, description=description)
            if copy_tags_from_source == "volume":
                volume_tags = self.tags.get(mapping.volume_id, {})
                snapshot.add_tags({k: v for k, v in volume_tags.items()
                                   if not k.startswith("aws:")})
            snapshot.add_tags(tags)
            snapshots.append(snapshot)
        return snapshots

    def create_snapshots_response(self: Any) -> Any:
        instance_spec = self._get_param("InstanceSpecification", {})
        description = self._get_param("Description", "")
        tags = self._parse_tag_specification().get("snapshot", {})
        self.error_on_dryrun()
        snapshots = self.ec2_backend.create_snapshots(
            instance_spec, description, tags, self._get_param("CopyTagsFromSource"))
        return ActionResult({"Snapshots": snapshots})

    EBSBackend.create_snapshots = create_snapshots  # type: ignore[method-assign]
    ElasticBlockStore.create_snapshots = create_snapshots_response  # type: ignore[method-assign]


def _values(spec: Any, prefix: str) -> list[str]:
    """The values of a list parameter, however the emulator parsed it."""
    found: list[str] = []
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key.startswith(prefix):
                found += _values(value, "") if isinstance(value, dict | list) else [str(value)]
            elif not prefix:
                found += _values(value, "")
    elif isinstance(spec, list):
        for item in spec:
            found += _values(item, "") if isinstance(item, dict | list) else [str(item)]
    elif not prefix and spec is not None:
        found.append(str(spec))
    return found


def copy_snapshots_shared_by_other_accounts() -> None:
    """Teach the emulator's CopySnapshot what real EC2 does: copy a snapshot that another
    account shares with the caller (createVolumePermission). The emulator looks for the source
    in the caller's own account only."""
    original = EBSBackend.copy_snapshot
    if getattr(original, "copies_shared_snapshots", False):
        return

    def copy_snapshot(self: Any, source_snapshot_id: str, source_region: str,
                      description: str, kms_key_id: str | None) -> Any:
        own = get_backend("ec2")[self.account_id][source_region]
        if source_snapshot_id in own.snapshots:
            return original(self, source_snapshot_id, source_region, description, kms_key_id)
        for account_id, regions in get_backend("ec2").items():
            source = regions[source_region].snapshots.get(source_snapshot_id)
            if source is None or account_id == self.account_id:
                continue
            if self.account_id not in source.create_volume_permission_userids and (
                    "all" not in source.create_volume_permission_groups):
                break
            copy = Snapshot(self, random_snapshot_id(), volume=source.volume,
                            description=description, encrypted=source.encrypted,
                            kms_key_id=kms_key_id)
            self.snapshots[copy.id] = copy
            return copy
        return original(self, source_snapshot_id, source_region, description, kms_key_id)

    copy_snapshot.copies_shared_snapshots = True  # type: ignore[attr-defined]
    EBSBackend.copy_snapshot = copy_snapshot  # type: ignore[method-assign]
