"""Add to the image's SBOM the SHA-256 of each wheel that was installed (from pip's report).

cyclonedx-py lists the installed distributions and their versions; pip's installation report
knows which archive each came from. Run in the image's build stage, by the build Python.

    python sbom_hashes.py SBOM.json PIP-REPORT.json...
"""

import json
import re
import sys


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(sbom_path: str, *reports: str) -> int:
    hashes, versions = {}, {}
    for report_path in reports:
        with open(report_path, encoding="utf-8") as stream:
            report = json.load(stream)
        for item in report.get("install", []):
            archive = item.get("download_info", {}).get("archive_info", {})
            digest = archive.get("hashes", {}).get("sha256") or (
                archive.get("hash", "").partition("sha256=")[2])
            name = canonical(item["metadata"]["name"])
            versions[name] = item["metadata"]["version"]
            if digest:
                hashes[name] = digest
    with open(sbom_path, encoding="utf-8") as stream:
        sbom = json.load(stream)
    # The root component comes from pyproject.toml, whose version is dynamic: the installed
    # one is the version.
    root = sbom.get("metadata", {}).get("component")
    if root and "version" not in root and canonical(root["name"]) in versions:
        root["version"] = versions[canonical(root["name"])]
    missing = []
    for component in sbom.get("components", []):
        digest = hashes.get(canonical(component["name"]))
        if digest:
            component["hashes"] = [{"alg": "SHA-256", "content": digest}]
        else:
            missing.append(component["name"])
    if missing:
        print(f"no installed archive known for: {', '.join(missing)}", file=sys.stderr)
        return 1
    with open(sbom_path, "w", encoding="utf-8") as stream:
        json.dump(sbom, stream, indent=2, sort_keys=True)
        stream.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
