"""The ebs-snapshot module: snapshot the selected volumes, then rotate the job's own snapshots.

The stages of a run are in `module.py`. Only snapshots tagged ``CreatedBy=molibackup`` *and*
``molibackup:job=<this job>`` are ever considered for deletion, here or in a copy
destination.
"""


from molibackup.modules.ebs_snapshot.module import EbsSnapshot

__all__ = ["EbsSnapshot"]
