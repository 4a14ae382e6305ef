"""One version everywhere, a changelog the chart's annotations come from, a packaged chart."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import helm_python
import kubernetes_validate
import yaml

from molibackup import __version__
from tests.chart.helm import web_job

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import chart_release  # noqa: E402


def test_the_chart_file_is_generated_from_the_version_and_the_changelog() -> None:
    assert (ROOT / "chart" / "Chart.yaml").read_text() == chart_release.render(), \
        "run `make chart`"


def test_every_version_is_the_packages() -> None:
    chart = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == __version__
    assert f":{__version__}" in chart["annotations"]["artifacthub.io/images"]
    released, _ = chart_release.newest_changes()
    assert released == __version__
    # The image's version label comes from the Makefile, which reads the package version.
    assert re.search(r"^ARG VERSION$", (ROOT / "Dockerfile").read_text(), flags=re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert "src/molibackup/__init__.py" in makefile
    assert "--build-arg VERSION=$(VERSION)" in makefile
    values = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())
    assert values["image"]["tag"] == ""  # the default tag is appVersion


def test_the_changes_annotation_is_the_newest_changelog_entry() -> None:
    chart = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())
    changes = yaml.safe_load(chart["annotations"]["artifacthub.io/changes"])
    kinds = {change["kind"] for change in changes}
    assert kinds <= {"added", "changed", "deprecated", "removed", "fixed", "security"}
    changelog = (ROOT / "CHANGELOG.md").read_text()
    newest = changelog.split(f"## [{__version__}]")[1].split("\n## [")[0]
    assert [c["description"] for c in changes] == [
        line[2:] for line in newest.splitlines() if line.startswith("- ")]


def test_the_packaged_chart_unpacks_and_renders(tmp_path: Path) -> None:
    archive = Path(helm_python.package(ROOT / "chart", destination=tmp_path))
    assert archive.name == f"molibackup-{__version__}.tgz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert "molibackup/values.schema.json" in names
        assert "molibackup/files/molibackup.schema.json" in names
        assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    with helm_python.Chart.load_archive(archive.read_bytes()) as chart:
        values = {"jobs": {"web-daily": web_job()}}
        chart.validate_schema(values)
        rendered = chart.render(values, name="rel", namespace="backup")
    objects = [obj for path, text in rendered.items() if not path.endswith("NOTES.txt")
               for obj in yaml.safe_load_all(io.StringIO(text)) if obj]
    assert {obj["kind"] for obj in objects} == {"ConfigMap", "CronJob", "ServiceAccount"}
    for obj in objects:
        kubernetes_validate.validate(obj, "1.37", strict=True)


def test_make_chart_package_names_each_platforms_image_by_digest() -> None:
    digests = {"linux/amd64": "sha256:" + "a" * 64, "linux/arm64": "sha256:" + "b" * 64}
    result = subprocess.run(
        ["make", "--no-print-directory", "chart-package",
         "IMAGE_DIGESTS=" + ",".join(f"{p}={d}" for p, d in digests.items())],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    archive = ROOT / result.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        member = tar.extractfile("molibackup/Chart.yaml")
        assert member is not None
        chart = yaml.safe_load(member.read())
    images = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert {image["platforms"][0]: image["image"].split("@")[1] for image in images} == digests
    # The chart in the repository keeps its tag-only annotation.
    assert (ROOT / "chart" / "Chart.yaml").read_text() == chart_release.render()
