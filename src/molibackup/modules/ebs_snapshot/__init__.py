"""The ebs-snapshot module: snapshot the selected volumes, then rotate the job's own snapshots.

Order of a run: select volumes -> create one snapshot each (concurrently, tagged at creation)
-> list the job's snapshots by tag -> plan with `retention.plan` -> delete the expired ones.
Only snapshots tagged ``CreatedBy=molibackup`` *and* ``molibackup:job=<this job>`` are ever
considered for deletion.
"""


from molibackup.modules.ebs_snapshot.module import EbsSnapshot

__all__ = ["EbsSnapshot"]
