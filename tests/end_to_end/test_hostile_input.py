"""Whatever a careless or malicious user types: one clear line and exit 1, never a traceback,
a hang, a leaked secret, or a crash after --validate said yes. Run against the real CLI."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from molibackup import config, log
from molibackup.config import loading
from molibackup.errors import ConfigError
from tests.conftest import CliRun, job
from tests.support.cli import executable, molibackup
from tests.support.ec2proxy import EC2Proxy
from tests.support.fleet import REGION, Fleet

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYHOSTILEKEY"
VALID_JOB = f"module: ebs-snapshot\n    aws_region: {REGION}\n"


def assert_one_clear_failure(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "<unicode string>" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "molibackup.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- YAML's own features, and their abuse -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(f"!!int {SECRET}", "cannot be read as a whole number (!!int)", id="int"),
        pytest.param(f"!!float {SECRET}", "cannot be read as a number (!!float)", id="float"),
        pytest.param(f"!!bool {SECRET}", "cannot be read as true or false (!!bool)", id="bool"),
        pytest.param(f"!!timestamp {SECRET}", "cannot be read as a date or time", id="timestamp"),
        pytest.param("!!binary a", "failed to decode base64 data", id="binary"),
        pytest.param(f"!!python/object:os.system {SECRET}", "could not determine a constructor",
                     id="python-object"),
    ],
)
def test_a_tag_on_a_value_that_is_not_one_is_one_line_without_the_value(
    tmp_path: Path, value: str, expected: str
) -> None:
    path = config_file(tmp_path, f"jobs:\n  a:\n    {VALID_JOB}    accesskey_id: AKIAX\n"
                                 f"    accesskey_secret: {value}\n")
    result = molibackup("-c", str(path), "--validate")
    assert_one_clear_failure(result, f"{path}: invalid YAML at line 6, column 23", expected)
    assert SECRET not in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("jobs:\n  ? [a, b]\n  : 1\n", "a list or a mapping cannot be a key",
                     id="sequence-key"),
        pytest.param("jobs:\n  {x: 1}: 1\n", "a list or a mapping cannot be a key",
                     id="mapping-key"),
        pytest.param("jobs: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels",
                     id="deep-flow"),
        pytest.param("jobs:\n" + "".join("  " * i + "- \n" for i in range(1, 300)),
                     "nested more than 64 levels", id="deep-block"),
        pytest.param("jobs: &loop\n  a: *loop\n", "refers to a value that contains it",
                     id="recursive-alias"),
        pytest.param("jobs:\n  a: {" + VALID_JOB.replace("\n    ", ", ").strip(", \n")
                     + "}\n  a: {module: ebs-snapshot}\n", "duplicate key 'a'",
                     id="duplicate-key"),
        pytest.param("jobs: {}\n---\njobs: {}\n", "found a second YAML document",
                     id="two-documents"),
    ],
)
def test_yaml_abuse_is_refused_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = config_file(tmp_path, text)
    started = time.monotonic()
    result = molibackup("-c", str(path), "--validate", timeout=30)
    assert_one_clear_failure(result, f"{path}: invalid YAML", expected)
    assert time.monotonic() - started < 10


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    path = config_file(tmp_path, "x-bomb:\n" + "".join(f"  {line}\n" for line in lines)
                       + "jobs: {}\n")
    started = time.monotonic()
    result = molibackup("-c", str(path), "--validate", timeout=30)
    assert_one_clear_failure(result, "more than 100000 values once its aliases are expanded")
    assert time.monotonic() - started < 5


def test_merge_keys_share_settings_between_jobs(
    tmp_path: Path, run_cli: Callable[..., CliRun]
) -> None:
    path = config_file(tmp_path, f"""\
x-defaults: &defaults
  module: ebs-snapshot
  aws_region: {REGION}
  retention: 14
jobs:
  web:
    <<: *defaults
    instance_tag: Role=web
  db:
    <<: *defaults
    retention: 90
    instance_tag: Role=db
""")
    result = run_cli("-c", str(path), "--validate")
    assert result.status == 0, result.log
    loaded = config.load(path)
    web, db = loaded.jobs
    assert (web.options["retention"], db.options["retention"]) == (14, 90)
    assert db.options["aws_region"] == REGION


def test_a_merged_key_may_be_overridden_but_a_real_duplicate_is_still_refused(
    tmp_path: Path
) -> None:
    path = config_file(tmp_path, f"""\
jobs:
  a: &a
    {VALID_JOB}    retention: 3
  b:
    <<: *a
    retention: 4
    retention: 5
""")
    result = molibackup("-c", str(path), "--validate")
    assert_one_clear_failure(result, "duplicate key 'retention' (first defined at line 8)")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"jobs:\n  a: \x00\n", "line 2, column 6: invalid character U+0000",
                     id="nul"),
        pytest.param(b"jobs:\n  a: \x1b[31m\n", "line 2, column 6: invalid character U+001B",
                     id="escape"),
        pytest.param(b"jobs:\n  a: \xc3\x28\n", "not UTF-8 text (invalid byte at line 2, "
                     "column 6)", id="bad-utf8"),
    ],
)
def test_invalid_characters_name_the_file_line_and_column(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "molibackup.yaml"
    path.write_bytes(content)
    result = molibackup("-c", str(path), "--validate")
    assert_one_clear_failure(result, f"{path}: ", expected)
    assert len(result.stderr.strip().splitlines()) == 2  # the problem, then "invalid"


# --- files that are not configuration files -----------------------------------------------


def test_a_fifo_is_refused_instead_of_waiting_forever(tmp_path: Path) -> None:
    fifo = tmp_path / "molibackup.yaml"
    os.mkfifo(fifo)
    result = molibackup("-c", str(fifo), "--validate", timeout=20)
    assert_one_clear_failure(result, f"{fifo}: is a named pipe (FIFO); the configuration file "
                                     "must be a regular file")


def test_a_device_is_refused_instead_of_read_forever() -> None:
    result = molibackup("-c", "/dev/zero", "--validate", timeout=20)
    assert_one_clear_failure(result, "/dev/zero: is a device")


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    path = config_file(tmp_path, "jobs: {}\n" + "# padding\n" * 200_000)
    result = molibackup("-c", str(path), "--validate")
    assert_one_clear_failure(result, "may be at most 1048576 bytes")


# --- whatever passes --validate runs --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("retention: 10000000000", "retention: must be a whole number of days "
                     "between 1 and 36500", id="retention-overflow"),
        pytest.param("min_keep: 10000000000", "min_keep: must be a whole number between 1 and "
                     "1000", id="min-keep-huge"),
        pytest.param("retention: 8.0", "retention: must be a whole number of days",
                     id="float-for-integer"),
        pytest.param("instance_id: \"i-0123456789abcdef0\\n\"",
                     "instance_id: must be 'local' or an instance id", id="id-with-newline"),
        pytest.param("volume_tags: {Backup: \"daily\\n\"}", "volume_tags.Backup: contains a "
                     "line break at its end", id="tag-value-with-newline"),
    ],
)
def test_values_the_runner_cannot_use_are_refused_by_validate(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = config_file(tmp_path, f"jobs:\n  a:\n    {VALID_JOB}    {text}\n")
    result = molibackup("-c", str(path), "--validate")
    assert_one_clear_failure(result, f"{path}: jobs.a.{expected}")


def test_a_global_float_for_an_integer_is_refused(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"global:\n  concurrency: 8.0\njobs:\n  a:\n    {VALID_JOB}")
    assert_one_clear_failure(molibackup("-c", str(path), "--validate"),
                             "global.concurrency: must be a whole number, got 8.0")


def test_a_job_name_with_a_newline_is_refused(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"jobs:\n  \"web\\n\":\n    {VALID_JOB}")
    result = molibackup("-c", str(path), "--validate")
    assert_one_clear_failure(result, "jobs: must be a job name of letters", "got 'web\\n'")
    assert len(result.stderr.strip().splitlines()) == 2


def test_the_largest_values_validate_accepts_run(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path],
    run_cli: Callable[..., CliRun],
) -> None:
    instance = fleet.instance({"Backup": "daily"})
    old = fleet.job_snapshot(instance.root_volume, "forever", age_days=400)
    path = write_config({"global": {"concurrency": 64, "max_attempts": 50,
                                    "connect_timeout": 300, "read_timeout": 900},
                         "jobs": {"forever": job(instance_tag="Backup=daily", retention=36500,
                                                 min_keep=1000)}})
    assert run_cli("-c", str(path), "--validate").status == 0
    result = run_cli("-c", str(path))
    assert result.status == 0, result.log
    assert "job forever: ok: created 1, deleted 0, kept 2" in result.log
    assert old in fleet.snapshot_ids()


# --- a schema given with --schema can only add refusals -----------------------------------


class _CountingServer(http.server.ThreadingHTTPServer):
    hits = 0


@pytest.fixture
def remote_schema_server() -> Iterator[_CountingServer]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            type(self.server).hits += 1  # type: ignore[attr-defined]
            body = b'{"type": "object"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _CountingServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_schema_ref_to_a_url_is_never_fetched(
    tmp_path: Path, remote_schema_server: _CountingServer
) -> None:
    port = remote_schema_server.server_address[1]
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"$ref": f"http://127.0.0.1:{port}/schema.json"}))
    path = config_file(tmp_path, f"jobs:\n  a:\n    {VALID_JOB}")
    result = molibackup("-c", str(path), "--schema", str(schema), "--validate")
    assert_one_clear_failure(result, f"{schema}: the schema cannot be applied")
    assert remote_schema_server.hits == 0


@pytest.mark.parametrize(
    ("schema_text", "config_text", "expected"),
    [
        pytest.param('{"$ref": "#/definitions/nowhere"}', f"jobs:\n  a:\n    {VALID_JOB}",
                     "the schema cannot be applied", id="dangling-ref"),
        pytest.param("{}", "global: {}\n", "missing required option 'jobs'",
                     id="permissive-schema-without-jobs"),
        pytest.param("{}", f"jobs:\n  a:\n    {VALID_JOB.replace('ebs-snapshot', 'tape')}",
                     "jobs.a.module: must be one of: ebs-snapshot; got 'tape'",
                     id="permissive-schema-unknown-module"),
        pytest.param("[1, 2]", f"jobs:\n  a:\n    {VALID_JOB}", "must be a JSON object",
                     id="schema-not-an-object"),
        pytest.param('{"type": 12}', f"jobs:\n  a:\n    {VALID_JOB}",
                     "not a valid JSON Schema", id="invalid-schema"),
        pytest.param("[" * 100_000 + "]" * 100_000, f"jobs:\n  a:\n    {VALID_JOB}",
                     "nested too deeply", id="deep-schema"),
    ],
)
def test_a_custom_schema_never_crashes_the_runner(
    tmp_path: Path, schema_text: str, config_text: str, expected: str
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(schema_text)
    path = config_file(tmp_path, config_text)
    result = molibackup("-c", str(path), "--schema", str(schema), "--validate")
    assert_one_clear_failure(result, expected)


def test_a_schema_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_bytes(b'{"description": "\xff"}')
    path = config_file(tmp_path, f"jobs:\n  a:\n    {VALID_JOB}")
    result = molibackup("-c", str(path), "--schema", str(schema), "--validate")
    assert_one_clear_failure(result, f"{schema}: not UTF-8 text")


# --- every problem at once ------------------------------------------------------------------


def test_a_wrong_module_does_not_hide_the_jobs_other_problems(tmp_path: Path) -> None:
    path = config_file(tmp_path, "jobs:\n  a:\n    module: ebs-snapshots\n"
                                 "    retension: 5\n    aws_region: Oregon\n")
    result = molibackup("-c", str(path), "--validate")
    assert_one_clear_failure(
        result,
        "jobs.a.module: must be one of: ebs-snapshot; got 'ebs-snapshots' (did you mean "
        "'ebs-snapshot'?)",
        "jobs.a.retension: unknown option (did you mean 'retention'?)",
        "jobs.a.aws_region: must be an AWS region such as us-west-2, got 'Oregon'")


def test_a_missing_module_does_not_hide_the_jobs_other_problems(tmp_path: Path) -> None:
    path = config_file(tmp_path, "jobs:\n  a:\n    retention: zero\n")
    assert_one_clear_failure(molibackup("-c", str(path), "--validate"),
                             "jobs.a: missing required option 'module'",
                             "jobs.a.retention: must be a whole number of days")


# --- the search path ------------------------------------------------------------------------


def test_an_unreadable_candidate_on_the_search_path_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root no permission is ever denied, so the refusal the kernel would give an
    # ordinary user is given here by the path check itself.
    monkeypatch.setattr(loading, "SYSTEM_CONFIG", tmp_path / "etc" / "molibackup.yaml")

    def denied(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_file", denied)
    with pytest.raises(ConfigError) as caught:
        config.find_config(None, {"HOME": str(tmp_path)})
    (line,) = caught.value.problems
    assert line.startswith(f"{tmp_path / 'etc' / 'molibackup.yaml'}: permission denied")
    assert "-c FILE" in line


def test_an_ordinary_user_with_an_unreadable_config_directory_gets_one_line() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the command as another user")
    nobody = 65534
    try:
        subprocess.run([executable(), "--version"], user=nobody, capture_output=True,
                       check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("this checkout is not readable by an ordinary user; the check above "
                    "covers the same refusal")
    home = Path(tempfile.mkdtemp(prefix="molibackup-home-"))
    try:
        home.chmod(0o755)
        locked = home / "molibackup"
        locked.mkdir(mode=0o700)  # owned by root: the ordinary user cannot look inside
        env = {"PATH": os.environ["PATH"], "HOME": str(home)}
        result = subprocess.run([executable(), "--validate"], user=nobody, env=env,
                                capture_output=True, text=True, check=False, timeout=60)
    finally:
        locked.rmdir()
        home.rmdir()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{locked / 'molibackup.yaml'}: permission denied" in result.stderr


# --- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--bogus"], "unrecognized arguments: --bogus", id="unknown-flag"),
        pytest.param(["--log-format", "xml"], "invalid choice: 'xml'", id="bad-choice"),
        pytest.param(["--job"], "expected one argument", id="missing-value"),
    ],
)
def test_a_usage_error_exits_1_with_one_line(argv: list[str], expected: str) -> None:
    result = molibackup(*argv)
    assert_one_clear_failure(result, expected, "see 'molibackup --help'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_usage_error_is_logged_in_the_requested_format() -> None:
    result = molibackup("--log-format", "json", "--bogus")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "error"
    assert "unrecognized arguments: --bogus" in record["message"]


# --- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["AWS_SESSION_TOKEN", "AWS_SECRET_ACCESS_KEY"])
def test_a_credential_ending_with_a_newline_is_refused_up_front_without_showing_it(
    aws_env: Any, tmp_path: Path, variable: str
) -> None:
    path = config_file(tmp_path, f"jobs:\n  a:\n    {VALID_JOB}    instance_tag: A=b\n")
    env = {**os.environ, variable: SECRET + "\n"}
    result = molibackup("-c", str(path), "--log-format", "json", env=env)
    assert_one_clear_failure(result, f"{variable} ends with a newline")
    assert SECRET not in result.stderr


def test_a_secret_reused_in_another_option_is_not_echoed(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"jobs:\n  a:\n    {VALID_JOB}    accesskey_id: AKIAX\n"
                                 f"    accesskey_secret: {SECRET}\n"
                                 f"    instance_id: {SECRET}\n    volume_tag: {SECRET}\n")
    result = molibackup("-c", str(path), "--validate")
    assert_one_clear_failure(result, "jobs.a.instance_id", "jobs.a.volume_tag")
    assert SECRET not in result.stderr


def test_a_short_secret_is_redacted_too(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"jobs:\n  a:\n    {VALID_JOB}    accesskey_id: AKIAX\n"
                                 "    accesskey_secret: Zq9\n    retention: Zq9\n")
    result = molibackup("-c", str(path), "--validate")
    assert_one_clear_failure(result, "jobs.a.retention")
    assert "Zq9" not in result.stderr


def test_every_printed_form_of_a_secret_is_redacted() -> None:
    token = "FQoGZXIvYXdzEJr//////////wEaDH+token/with=odd&chars\n"
    log.register_secrets([token])
    for shown in (token, token.strip(), repr(token), json.dumps(token),
                  "b'" + token.strip() + "\\n'", urllib.parse.quote(token, safe=""),
                  urllib.parse.quote_plus(token.strip(), safe="")):
        assert "odd" not in log.redact(f"header value {shown} was refused")


# --- signals --------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_new_work_reports_and_exits_with_the_conventional_status(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path], signum: int, status: int
) -> None:
    volumes = fleet.instance({"Backup": "daily"},
                             volumes={f"data{i}": {} for i in range(7)}).all_volumes
    expired = fleet.job_snapshot(volumes[0], "slow", age_days=90)
    path = write_config({"global": {"concurrency": 1},
                         "jobs": {"slow": job(instance_tag="Backup=daily", retention=7),
                                  "later": job(instance_tag="Backup=daily")}})
    with EC2Proxy(aws_env.url) as proxy:
        proxy.state.latency = 0.4
        process = subprocess.Popen([executable(), "-c", str(path)], text=True,
                                   stderr=subprocess.PIPE,
                                   env={**os.environ, "AWS_ENDPOINT_URL_EC2": proxy.url})
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "created snapshot" in line:
                process.send_signal(signum)
                break
        lines.extend(process.stderr)
        process.stderr.close()
        process.wait(timeout=60)
    output = "".join(lines)
    assert process.returncode == status, output
    assert f"received {signal.Signals(signum).name}" in output
    assert "Traceback" not in output
    created = [line for line in lines if "created snapshot" in line]
    assert 1 <= len(created) < len(volumes)
    assert f"job slow: INTERRUPTED: created {len(created)}, deleted 0" in output
    assert "1 job(s) started, 1 not started (later)" in output
    assert expired in fleet.snapshot_ids()  # rotation never started
    assert len(fleet.job_snapshots("slow")) == 1 + len(created)
