"""The arm64 image, built here without running any arm64 code, inspected instead of run.

No foreign-CPU emulation is available, so the arm64 variant is checked by what it holds:
every ELF file is aarch64, its Python is its base's, its entry point and user are right, and
its distributions are exactly the lock's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.conftest import ROOT, make, run

pytestmark = pytest.mark.container

NAME = "localhost/molibackup:multiarch-test"
AARCH64, X86_64 = 183, 62  # ELF e_machine


@pytest.fixture(scope="module")
def arm64_root(engine: str) -> Iterator[Path]:
    """The arm64 image of a multi-platform release, mounted read-only."""
    make("docker-release", engine, NAME, variables={"PLATFORMS": "linux/amd64,linux/arm64"})
    mounted = Path(run(engine, "image", "mount", f"{NAME}-arm64").stdout.strip())
    yield mounted
    run(engine, "image", "unmount", f"{NAME}-arm64", check=False)
    run(engine, "manifest", "rm", NAME, check=False)
    run(engine, "rmi", "-f", f"{NAME}-amd64", f"{NAME}-arm64", check=False)


def elf_machines(root: Path) -> dict[Path, int]:
    found = {}
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as stream:
            header = stream.read(20)
        if header[:4] == b"\x7fELF":
            found[path] = int.from_bytes(header[18:20], "little")
    return found


def test_the_release_is_one_manifest_list_of_both_platforms(engine: str,
                                                            arm64_root: Path) -> None:
    manifest = json.loads(run(engine, "manifest", "inspect", NAME).stdout)
    platforms = {(m["platform"]["os"], m["platform"]["architecture"])
                 for m in manifest["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}


def test_every_elf_file_of_the_arm64_image_is_aarch64(arm64_root: Path) -> None:
    ours = elf_machines(arm64_root / "opt" / "molibackup")
    assert ours, "the image holds compiled extensions (PyYAML, rpds-py): none was found"
    assert set(ours.values()) == {AARCH64}, {str(p): m for p, m in ours.items()}
    base = elf_machines(arm64_root / "usr" / "bin")
    assert base
    assert X86_64 not in base.values()


def test_the_arm64_python_is_its_bases(arm64_root: Path) -> None:
    config = (arm64_root / "opt" / "molibackup" / "pyvenv.cfg").read_text()
    version = re.search(r"^version = (\d+\.\d+)", config, flags=re.M)
    assert version
    python = arm64_root / "usr" / "bin" / f"python{version.group(1)}"
    assert python.is_file()
    assert elf_machines(python.parent)[python] == AARCH64
    assert (arm64_root / "opt" / "molibackup" / "lib" / f"python{version.group(1)}"
            / "site-packages" / "molibackup" / "__init__.py").is_file()


def test_the_arm64_entry_point_user_and_labels_are_right(engine: str,
                                                         arm64_root: Path) -> None:
    (info,) = json.loads(run(engine, "image", "inspect", f"{NAME}-arm64").stdout)
    assert info["Architecture"] == "arm64"
    config = info["Config"]
    assert config["Entrypoint"] == ["molibackup"]
    assert config["User"] == "65532:65532"
    version = re.search(r'__version__ = "([^"]+)"',
                        (ROOT / "src" / "molibackup" / "__init__.py").read_text())
    assert version
    assert config["Labels"]["org.opencontainers.image.version"] == version.group(1)
    script = (arm64_root / "opt" / "molibackup" / "bin" / "molibackup").read_text()
    assert script.startswith("#!/opt/molibackup/bin/python")


def test_the_arm64_wheel_set_equals_the_lock(arm64_root: Path) -> None:
    site = next((arm64_root / "opt" / "molibackup" / "lib").glob("python*/site-packages"))
    installed = set()
    for dist_info in site.glob("*.dist-info"):
        metadata = (dist_info / "METADATA").read_text(encoding="utf-8")
        name = re.search(r"^Name: (.+)$", metadata, flags=re.M)
        version = re.search(r"^Version: (.+)$", metadata, flags=re.M)
        assert name
        assert version
        installed.add((re.sub(r"[-_.]+", "-", name.group(1)).lower(), version.group(1)))
    # Pins for Windows only (markers) are not the image's.
    locked = {(re.sub(r"[-_.]+", "-", name).lower(), version) for name, version, marker in
              re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)(.*)$",
                         (ROOT / "requirements.lock").read_text(), flags=re.M)
              if "win32" not in marker}
    assert installed - locked == {("molibackup", installed_version)
                                  for name, installed_version in installed
                                  if name == "molibackup"}
    assert locked <= installed
    sbom = json.loads((arm64_root / "usr" / "share" / "doc" / "molibackup"
                       / "sbom.cdx.json").read_text())
    assert {(re.sub(r"[-_.]+", "-", c["name"]).lower(), c["version"])
            for c in sbom["components"]} == locked
