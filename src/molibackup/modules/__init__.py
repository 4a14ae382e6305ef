"""The registry of backup modules: the name used in `module:` maps to its class."""

from __future__ import annotations

from molibackup.modules.base import Module
from molibackup.modules.ebs_snapshot import EbsSnapshot

REGISTRY: dict[str, type[Module]] = {
    EbsSnapshot.name: EbsSnapshot,
}
