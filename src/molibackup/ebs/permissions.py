"""The IAM policies each role needs, as data: the one source of the permission sets the
code declares (the job's, restore's, verify's) and of the policies the IAM reference
shows (`make docs` writes them into docs/reference/iam.md). The integration tests check
the permission sets against the calls that runs make."""

from __future__ import annotations

from typing import Any

#: The role a job runs as.
BACKUP: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "FindInstancesVolumesSnapshots",
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeInstances",
                "ec2:DescribeVolumes",
                "ec2:DescribeSnapshots",
                "ec2:DescribeFastSnapshotRestores"
            ],
            "Resource": "*"
        },
        {
            "Sid": "SnapshotVolumesAndInstances",
            "Effect": "Allow",
            "Action": [
                "ec2:CreateSnapshot",
                "ec2:CreateSnapshots"
            ],
            "Resource": [
                "arn:aws:ec2:*:*:volume/*",
                "arn:aws:ec2:*:*:instance/*"
            ]
        },
        {
            "Sid": "CreateOnlyTaggedSnapshots",
            "Effect": "Allow",
            "Action": [
                "ec2:CreateSnapshot",
                "ec2:CreateSnapshots"
            ],
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:RequestTag/CreatedBy": "molibackup"
                }
            }
        },
        {
            "Sid": "TagOnlyAtCreation",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "ec2:CreateAction": [
                        "CreateSnapshot",
                        "CreateSnapshots",
                        "CopySnapshot"
                    ]
                }
            }
        },
        {
            "Sid": "CopyOnlyIntoTaggedSnapshots",
            "Effect": "Allow",
            "Action": "ec2:CopySnapshot",
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:RequestTag/CreatedBy": "molibackup"
                }
            }
        },
        {
            "Sid": "ShareOwnSnapshotsForCopies",
            "Effect": "Allow",
            "Action": "ec2:ModifySnapshotAttribute",
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:ResourceTag/CreatedBy": "molibackup"
                }
            }
        },
        {
            "Sid": "AssumeBackupRoles",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": "arn:aws:iam::*:role/molibackup*"
        },
        {
            "Sid": "TagOwnSnapshots",
            "Effect": "Allow",
            "Action": [
                "ec2:CreateTags",
                "ec2:DeleteTags"
            ],
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:ResourceTag/CreatedBy": "molibackup"
                }
            }
        },
        {
            "Sid": "HooksOnInstancesThroughSsm",
            "Effect": "Allow",
            "Action": "ssm:SendCommand",
            "Resource": [
                "arn:aws:ec2:*:*:instance/*",
                "arn:aws:ssm:*::document/AWS-RunShellScript",
                "arn:aws:ssm:*::document/AWS-RunPowerShellScript"
            ]
        },
        {
            "Sid": "HookResults",
            "Effect": "Allow",
            "Action": "ssm:GetCommandInvocation",
            "Resource": "*"
        },
        {
            "Sid": "DeleteLockArchiveOnlyOwnSnapshots",
            "Effect": "Allow",
            "Action": [
                "ec2:DeleteSnapshot",
                "ec2:LockSnapshot",
                "ec2:ModifySnapshotTier"
            ],
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:ResourceTag/CreatedBy": "molibackup"
                }
            }
        }
    ]
}

#: The role a job assumes in a copy_to destination account.
COPY_DESTINATION: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReadCopies",
            "Effect": "Allow",
            "Action": "ec2:DescribeSnapshots",
            "Resource": "*"
        },
        {
            "Sid": "CopyOnlyIntoTaggedSnapshots",
            "Effect": "Allow",
            "Action": "ec2:CopySnapshot",
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:RequestTag/CreatedBy": "molibackup"
                }
            }
        },
        {
            "Sid": "TagOnlyAtCopy",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "ec2:CreateAction": "CopySnapshot"
                }
            }
        },
        {
            "Sid": "DeleteOnlyOwnCopies",
            "Effect": "Allow",
            "Action": "ec2:DeleteSnapshot",
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:ResourceTag/CreatedBy": "molibackup"
                }
            }
        }
    ]
}

#: The role `molibackup restore` runs as.
RESTORE: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "FindSnapshotsVolumesInstances",
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeSnapshots",
                "ec2:DescribeVolumes",
                "ec2:DescribeInstances",
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeSnapshotTierStatus"
            ],
            "Resource": "*"
        },
        {
            "Sid": "VolumesFromSnapshots",
            "Effect": "Allow",
            "Action": "ec2:CreateVolume",
            "Resource": "arn:aws:ec2:*::snapshot/*"
        },
        {
            "Sid": "OnlyTaggedRestoredVolumes",
            "Effect": "Allow",
            "Action": "ec2:CreateVolume",
            "Resource": "arn:aws:ec2:*:*:volume/*",
            "Condition": {
                "StringLike": {
                    "aws:RequestTag/molibackup:restore-id": "*"
                }
            }
        },
        {
            "Sid": "TagOnlyAtCreation",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "arn:aws:ec2:*:*:volume/*",
            "Condition": {
                "StringEquals": {
                    "ec2:CreateAction": "CreateVolume"
                }
            }
        },
        {
            "Sid": "AttachOnlyRestoredVolumes",
            "Effect": "Allow",
            "Action": "ec2:AttachVolume",
            "Resource": "arn:aws:ec2:*:*:volume/*",
            "Condition": {
                "StringLike": {
                    "aws:ResourceTag/molibackup:restore-id": "*"
                }
            }
        },
        {
            "Sid": "AttachToInstances",
            "Effect": "Allow",
            "Action": "ec2:AttachVolume",
            "Resource": "arn:aws:ec2:*:*:instance/*"
        },
        {
            "Sid": "BringBackOwnArchivedSnapshots",
            "Effect": "Allow",
            "Action": "ec2:RestoreSnapshotTier",
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:ResourceTag/CreatedBy": "molibackup"
                }
            }
        },
        {
            "Sid": "CopiesInOtherAccounts",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": "arn:aws:iam::*:role/molibackup*"
        }
    ]
}

#: The role `molibackup verify` runs as.
VERIFY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "FindVolumesSnapshots",
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeInstances",
                "ec2:DescribeVolumes",
                "ec2:DescribeSnapshots"
            ],
            "Resource": "*"
        },
        {
            "Sid": "ReadSnapshotBlocks",
            "Effect": "Allow",
            "Action": [
                "ebs:ListSnapshotBlocks",
                "ebs:GetSnapshotBlock"
            ],
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:ResourceTag/CreatedBy": "molibackup"
                }
            }
        },
        {
            "Sid": "TagTheEvidence",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {
                "StringEquals": {
                    "aws:ResourceTag/CreatedBy": "molibackup"
                }
            }
        },
        {
            "Sid": "TagVerificationVolumesAtCreation",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "arn:aws:ec2:*:*:volume/*",
            "Condition": {
                "StringEquals": {
                    "ec2:CreateAction": "CreateVolume"
                }
            }
        },
        {
            "Sid": "VolumeMethodFromSnapshots",
            "Effect": "Allow",
            "Action": "ec2:CreateVolume",
            "Resource": "arn:aws:ec2:*::snapshot/*"
        },
        {
            "Sid": "VolumeMethodMakesOnlyVerificationVolumes",
            "Effect": "Allow",
            "Action": "ec2:CreateVolume",
            "Resource": "arn:aws:ec2:*:*:volume/*",
            "Condition": {
                "StringLike": {
                    "aws:RequestTag/molibackup:verification-of": "snap-*"
                }
            }
        },
        {
            "Sid": "VolumeMethodDeletesOnlyVerificationVolumes",
            "Effect": "Allow",
            "Action": "ec2:DeleteVolume",
            "Resource": "arn:aws:ec2:*:*:volume/*",
            "Condition": {
                "StringLike": {
                    "aws:ResourceTag/molibackup:verification-of": "snap-*"
                }
            }
        }
    ]
}


def actions(policy: dict[str, Any]) -> frozenset[str]:
    """Every action a policy allows."""
    found: set[str] = set()
    for statement in policy["Statement"]:
        granted = statement["Action"]
        found |= {granted} if isinstance(granted, str) else set(granted)
    return frozenset(found)
