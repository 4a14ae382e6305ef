"""A job's targets: accounts x regions. A target is a different session and region, never a
different code path: the module runs for it as it would for a job of that one region.

Accounts are the job's own (default), a list of roles (`accounts`), or the ACTIVE accounts
of an organization (`organization`, listed with organizations:ListAccounts using the job's
own credentials) with a role of the same name in each.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import boto3

from molibackup.aws.clients import client as aws_client
from molibackup.aws.clients import paginate
from molibackup.errors import AwsError, JobError
from molibackup.jobs import Target


@dataclass(frozen=True)
class AccountRole:
    """One account of a job, and the role assumed in it."""

    role_arn: str
    external_id: str | None = None
    name: str | None = None

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]


@dataclass(frozen=True)
class OrganizationSelector:
    role_name: str
    accounts: tuple[str, ...] = ()  # globs of account ids or names; none: every account
    exclude: tuple[str, ...] = ()
    external_id: str | None = None

    def selects(self, account_id: str, name: str) -> bool:
        def matches(patterns: Sequence[str]) -> bool:
            return any(fnmatch.fnmatchcase(account_id, p) or fnmatch.fnmatchcase(name, p)
                       for p in patterns)

        return (not self.accounts or matches(self.accounts)) and not matches(self.exclude)


def organization_accounts(session: boto3.Session, selector: OrganizationSelector,
                          partition: str = "aws") -> list[AccountRole]:
    """The organization's ACTIVE accounts the selector takes, every page; JobError with one
    line when the listing fails (before any target starts)."""
    try:
        client = aws_client(session, "organizations", "us-east-1", None)
        listed = list(paginate(client, "list_accounts", "Accounts"))
    except AwsError as exc:
        raise JobError(f"could not list the organization's accounts: {exc} (the job's own "
                       "credentials must be the management account's, or a delegated "
                       "administrator's)") from None
    roles = []
    for account in listed:
        account_id, name = str(account["Id"]), str(account.get("Name", ""))
        if account.get("Status", "ACTIVE") != "ACTIVE" or not selector.selects(account_id,
                                                                                name):
            continue
        roles.append(AccountRole(f"arn:{partition}:iam::{account_id}:role/{selector.role_name}",
                                 selector.external_id, name or None))
    return sorted(roles, key=lambda role: role.account)


def expand(regions: Sequence[str], accounts: Sequence[AccountRole | None]) -> list[Target]:
    """Accounts x regions, sorted: the same list in every pod and run."""
    targets = [Target(account=role.account if role else None, region=region,
                      role_arn=role.role_arn if role else None,
                      external_id=role.external_id if role else None,
                      name=role.name if role else None)
               for role in accounts for region in regions]
    return sorted(targets, key=lambda t: (t.account or "", t.region))
