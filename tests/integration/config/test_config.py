"""Real YAML files through the real loader: what users write, and what they are told."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from molibackup import config
from molibackup.ebs.job import EbsJob
from molibackup.errors import ConfigError
from tests.conftest import CliRun, job

ROOT = Path(__file__).resolve().parents[3]


def problems_of(path: Path, schema: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(path, schema)
    return caught.value.problems


VALID = {"global": {"loglevel": "info"}, "jobs": {"myjob01": job(instance_id="local")}}


def test_defaults_come_from_the_schema(write_config: Callable[..., Path]) -> None:
    loaded = config.load(write_config(VALID))
    assert loaded.settings == config.GlobalSettings(
        "info", "text", 8, None, 10, 30, 2, config.MetricsSettings(None, None, 5), None,
        {"standard": 0.05, "archive": 0.0125}, 4)
    (only,) = loaded.jobs
    assert (only.name, only.module, only.enabled, only.dryrun) == (
        "myjob01", "ebs-snapshot", True, False)
    assert only.options["min_keep"] == 1
    assert only.options["allow_empty"] is False
    assert only.options["timezone"] == "UTC"
    assert EbsJob.from_config(only).options.policy.retention_days == 30


RETENTION_MUST = ("jobs.myjob01.retention: must be a whole number of days between 1 and 36500 "
                  "(100 years), got")


@pytest.mark.parametrize(
    ("job_options", "expected"),
    [
        pytest.param({"retention": "ninety"},
                     RETENTION_MUST + " 'ninety'",
                     id="retention-not-a-number"),
        pytest.param({"retention": 0},
                     RETENTION_MUST + " 0",
                     id="retention-zero"),
        pytest.param({"retention": -5},
                     RETENTION_MUST + " -5",
                     id="retention-negative"),
        pytest.param({"retention": 7.5},
                     RETENTION_MUST + " 7.5",
                     id="retention-fraction"),
        pytest.param({"retension": 90},
                     "jobs.myjob01.retension: unknown option (did you mean 'retention'?)",
                     id="typo-suggests-the-option"),
        pytest.param({"colour": "blue"}, "jobs.myjob01.colour: unknown option; valid options:",
                     id="unknown-option-lists-valid-ones"),
        pytest.param({"aws_region": None},
                     "jobs.myjob01.aws_region: must be an AWS region such as us-west-2, got "
                     "nothing (an empty value)", id="region-empty"),
        pytest.param({"aws_region": "Oregon"},
                     "jobs.myjob01.aws_region: must be an AWS region such as us-west-2, got "
                     "'Oregon'", id="region-malformed"),
        pytest.param({"enabled": "maybe"},
                     "jobs.myjob01.enabled: must be true or false, got 'maybe'", id="enabled-type"),
        pytest.param({"dryrun": 3}, "jobs.myjob01.dryrun: must be true or false, got 3",
                     id="dryrun-type"),
        pytest.param({"instance_id": "i-123"},
                     "jobs.myjob01.instance_id: must be 'local' or an instance id such as "
                     "i-0123456789abcdef0, got 'i-123'", id="instance-id-malformed"),
        pytest.param({"instance_tag": "Backup"},
                     "jobs.myjob01.instance_tag: must be a tag as \"Key=Value\", got 'Backup'",
                     id="tag-without-value"),
        pytest.param({"volume_tags": {}}, "jobs.myjob01.volume_tags: must not be empty",
                     id="empty-tag-map"),
        pytest.param({"instance_tags": {"Backup": True}},
                     "jobs.myjob01.instance_tags.Backup: must be a string; quote values YAML "
                     "would read otherwise, such as \"true\"", id="unquoted-boolean-tag"),
        pytest.param({"accesskey_id": "AKIAEXAMPLE"},
                     "jobs.myjob01: 'accesskey_id' is set but 'accesskey_secret' is missing: "
                     "give both or neither", id="key-without-secret"),
        pytest.param({"accesskey_secret": "s3cr3t-value"},
                     "jobs.myjob01: 'accesskey_secret' is set but 'accesskey_id' is missing",
                     id="secret-without-key"),
        pytest.param({"lock_mode": "governance"},
                     "jobs.myjob01: 'lock_mode' is set but 'lock_duration' is missing",
                     id="lock-mode-without-duration"),
        pytest.param({"lock_mode": "forever", "lock_duration": 3},
                     "jobs.myjob01.lock_mode: must be one of: governance, compliance; got "
                     "'forever'", id="lock-mode-unknown"),
        pytest.param({"module": "ebs-snapsot"},
                     "jobs.myjob01.module: must be one of: ebs-snapshot; got 'ebs-snapsot'",
                     id="unknown-module"),
    ],
)
def test_each_mistake_is_reported_with_file_job_and_option(
    write_config: Callable[..., Path], job_options: dict[str, Any], expected: str
) -> None:
    path = write_config({"jobs": {"myjob01": {**job(instance_id="local"), **job_options}}})
    problems = problems_of(path)
    assert any(line.startswith(f"{path}: {expected}") for line in problems), problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "the file is empty", id="empty-file"),
        pytest.param("# only a comment\n", "the file is empty", id="only-comments"),
        pytest.param("- a\n- b\n", "must be a mapping with 'global' and 'jobs' sections",
                     id="a-list"),
        pytest.param("global:\n  loglevel: info\n", "missing required option 'jobs'",
                     id="no-jobs-section"),
        pytest.param("jobs: {}\n", "jobs: no jobs defined: add at least one job", id="no-jobs"),
        pytest.param("jobs:\n  a:\n    module: ebs-snapshot\n   aws_region: x\n",
                     "invalid YAML at line 4, column", id="bad-indentation"),
        pytest.param("jobs:\n  a: {module: [\n", "invalid YAML at line", id="unclosed-bracket"),
        pytest.param("jobs:\n  a: {module: ebs-snapshot, aws_region: us-west-2}\n"
                     "  a: {module: ebs-snapshot, aws_region: us-west-2}\n",
                     "duplicate key 'a' (first defined at line 2)", id="duplicate-job"),
        pytest.param("global:\n  loglevel: loud\njobs:\n  a: {module: ebs-snapshot, "
                     "aws_region: us-west-2}\n",
                     "global.loglevel: must be one of: debug, info, warning, error; got 'loud'",
                     id="bad-loglevel"),
        pytest.param("jobs:\n  a:\n", "jobs.a: must be a mapping of options, got nothing",
                     id="job-without-options"),
        pytest.param("jobs:\n  'my job': {module: ebs-snapshot, aws_region: us-west-2}\n",
                     "jobs: must be a job name", id="job-name-with-space"),
        pytest.param("jobs:\n  a: {aws_region: us-west-2}\n",
                     "jobs.a: missing required option 'module'", id="no-module"),
        pytest.param("jobs:\n  a: {module: ebs-snapshot}\n",
                     "jobs.a: missing required option 'aws_region'", id="no-region"),
        pytest.param("jobs:\n  a: {module: ebs-snapshot, aws_region: us-west-2}\nextra: 1\n",
                     "extra: unknown option", id="unknown-section"),
    ],
)
def test_unusable_files_get_one_clear_line(
    write_config: Callable[..., Path], text: str, expected: str
) -> None:
    path = write_config(text)
    problems = problems_of(path)
    assert any(expected in line for line in problems), problems
    assert all(line.startswith(str(path)) for line in problems)


def test_a_secret_of_the_wrong_type_is_not_echoed(write_config: Callable[..., Path]) -> None:
    path = write_config({"jobs": {"a": job(accesskey_id="AKIAEXAMPLE",
                                           accesskey_secret=987654321987)}})
    problems = problems_of(path)
    assert any("jobs.a.accesskey_secret: must be a string" in line for line in problems)
    assert not any("987654321987" in line for line in problems)


def test_an_empty_global_section_is_fine(write_config: Callable[..., Path]) -> None:
    loaded = config.load(write_config("global:\njobs:\n  a: {module: ebs-snapshot, "
                                      "aws_region: us-west-2}\n"))
    assert loaded.settings.loglevel == "info"


def test_every_problem_is_reported_at_once(write_config: Callable[..., Path]) -> None:
    path = write_config({"jobs": {
        "a": job(retention="x", colour="blue"),
        "b": {"module": "ebs-snapshot"},
    }})
    problems = problems_of(path)
    assert len(problems) == 3, problems


def test_contradicting_tag_selectors_are_refused(
    write_config: Callable[..., Path], run_cli: Callable[..., CliRun]
) -> None:
    path = write_config({"jobs": {"a": job(instance_tag="Backup=daily",
                                           instance_tags={"Backup": "weekly"})}})
    result = run_cli("-c", str(path), "--validate")
    assert result.status == 1
    assert f"{path}: jobs.a.instance_tag: tag 'Backup' is 'daily' here but 'weekly'" in result.log


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    assert "is a directory" in problems_of(tmp_path)[0]


def test_an_unreadable_file_is_named(write_config: Callable[..., Path]) -> None:
    path = write_config(VALID)
    path.write_bytes(b"jobs:\n  \xff\xfe: 1\n")
    assert "not UTF-8 text (invalid byte at line 2, column 3)" in problems_of(path)[0]


# --- where the file is found --------------------------------------------------------------


def test_search_order_when_no_path_is_given(tmp_path: Path) -> None:
    env = {"MOLIBACKUP_CONFIG": "/from/env.yaml", "HOME": "/home/ops"}
    assert config.candidate_paths(env, executable="/opt/bin/molibackup") == [
        Path("/from/env.yaml"),
        Path("/etc/molibackup/molibackup.yaml"),
        Path("/home/ops/molibackup/molibackup.yaml"),
        Path("/opt/bin/molibackup.yaml"),
    ]


def test_the_environment_variable_wins(write_config: Callable[..., Path]) -> None:
    path = write_config(VALID)
    assert config.find_config(None, {"MOLIBACKUP_CONFIG": str(path)}) == path


def test_an_explicit_path_wins_over_everything(write_config: Callable[..., Path]) -> None:
    path = write_config(VALID)
    assert config.find_config(str(path), {"MOLIBACKUP_CONFIG": "/elsewhere.yaml"}) == path


def test_the_home_directory_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "etc" / "absent.yaml")
    home_config = tmp_path / "molibackup" / "molibackup.yaml"
    home_config.parent.mkdir()
    home_config.write_text("jobs: {}\n")
    assert config.find_config(None, {"HOME": str(tmp_path)}) == home_config


def test_no_file_anywhere_lists_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "etc" / "absent.yaml")
    monkeypatch.setattr("sys.argv", [str(tmp_path / "bin" / "molibackup")])
    with pytest.raises(ConfigError) as caught:
        config.find_config(None, {"HOME": str(tmp_path / "home")})
    message = caught.value.problems[0]
    assert "no configuration file found" in message
    assert str(tmp_path / "home" / "molibackup" / "molibackup.yaml") in message
    assert "-c FILE" in message


# --- the schema can come from elsewhere ---------------------------------------------------


def test_another_schema_copy_can_be_given(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    stricter = (ROOT / "schema" / "molibackup.schema.json").read_text().replace(
        '"maximum": 64', '"maximum": 2')
    schema = tmp_path / "schema.json"
    schema.write_text(stricter)
    path = write_config({"global": {"concurrency": 4}, "jobs": VALID["jobs"]})
    assert config.load(path).settings.concurrency == 4
    assert "global.concurrency: must be at most 2, got 4" in problems_of(path, schema)[0]


def test_defaults_hold_whatever_schema_copy_validates(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    bare = json.loads((ROOT / "schema" / "molibackup.schema.json").read_text())
    for spec in bare["definitions"]["ebs-snapshot"]["properties"].values():
        spec.pop("default", None)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(bare))
    (only,) = config.load(write_config(VALID), schema).jobs
    assert only.options["min_keep"] == 1


def test_a_broken_schema_file_is_a_config_error(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text("{not json")
    assert "the schema is not valid JSON" in problems_of(write_config(VALID), schema)[0]


# --- the documentation's examples ----------------------------------------------------------------


def documented_configs() -> list[Any]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
        name = page.relative_to(ROOT).with_suffix("").as_posix().replace("/", "-")
        found += [pytest.param(block, id=f"{name}-example-{i}") for i, block in enumerate(blocks)
                  if re.search(r"^jobs:", block, flags=re.M)]
    return found


@pytest.mark.parametrize("text", documented_configs())
def test_the_documented_examples_are_valid_configs(
    write_config: Callable[..., Path], text: str
) -> None:
    loaded = config.load(write_config(text))
    assert loaded.jobs
