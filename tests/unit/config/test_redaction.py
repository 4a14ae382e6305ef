"""Secrets are redacted as whole tokens; values too short to be a credential are not
patterns at all (they would mask ordinary words)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from molibackup import log
from molibackup.config import sensitive

KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def no_secrets() -> Iterator[None]:
    log.forget_secrets()
    yield
    log.forget_secrets()


def test_a_value_too_short_to_be_a_credential_masks_nothing() -> None:
    log.register_secrets(["y"])
    text = "configuration: c.yaml, dry run, copy_to"
    assert log.redact(text) == text


def test_a_secret_is_redacted_as_a_whole_token_only() -> None:
    log.register_secrets(["abcdefgh12"])
    assert log.redact("secret abcdefgh12 here") == "secret *** here"
    assert log.redact("key=abcdefgh12&x") == "key=***&x"
    assert log.redact("xabcdefgh12y") == "xabcdefgh12y"


def test_a_real_credential_is_redacted_wherever_it_stands_alone() -> None:
    log.register_secrets([KEY])
    assert KEY not in log.redact(f"signature over {KEY}, then '{KEY}'")


def test_secrets_are_found_at_any_depth_of_the_config_and_in_url_passwords() -> None:
    data = {"global": {"ping_url": "https://hc/x", "metrics": {
        "pushgateway": "https://user:hunter2-long@gw"}},
            "jobs": {"a": {"accesskey_secret": KEY, "copy_to": [{"external_id": "ext-123"}],
                           "accounts": [{"external_id": "ext-456"}]}}}
    found = set(sensitive.in_config(data))
    assert {"https://hc/x", "hunter2-long", KEY, "ext-123", "ext-456"} <= found


def test_the_environments_secrets_are_the_listed_variables() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": KEY, "AWS_ACCESS_KEY_ID": "AKIA", "HOME": "/root"}
    assert sensitive.in_environment(env) == [KEY]
