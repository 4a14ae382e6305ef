"""Generate the chart's Grafana dashboard (chart/files/dashboard.json) with Grafana's own
grafana-foundation-sdk, from the metrics molibackup pushes.

Run by `make chart`; a test fails when the committed file differs from what this script
generates, and another evaluates every panel's query against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "chart" / "files" / "dashboard.json"
JOB = 'molibackup_job=~"$job"'
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

#: (row, title, unit, query, legend): every panel of the dashboard, one query each.
PANELS: tuple[tuple[str, str, str, str, str], ...] = (
    ("Health", "Time since the last success", "s",
     f"time() - max by (molibackup_job) (molibackup_job_last_success_timestamp_seconds{{{JOB}}})",
     "{{molibackup_job}}"),
    ("Health", "Snapshots of the last run", "short",
     f'sum by (molibackup_job, outcome) (molibackup_job_snapshots{{{JOB}, '
     f'outcome=~"created|deleted|failed"}})', "{{molibackup_job}} {{outcome}}"),
    ("Health", "Volumes without a snapshot in 2 days", "short",
     f"sum by (molibackup_job) ((time() - molibackup_volume_last_snapshot_timestamp_seconds"
     f"{{{JOB}}}) > bool 172800)", "{{molibackup_job}}"),
    ("Health", "Time since each volume's backup was verified", "s",
     f"time() - max by (molibackup_job, volume_id) "
     f"(molibackup_verify_last_success_timestamp_seconds{{{JOB}}})",
     "{{molibackup_job}} {{volume_id}}"),
    ("Cost and hygiene", "Stored bytes", "bytes",
     f"sum by (molibackup_job) (molibackup_report_stored_bytes{{{JOB}}})",
     "{{molibackup_job}}"),
    ("Cost and hygiene", "Estimated monthly cost (USD, at global.prices)", "currencyUSD",
     f"sum by (molibackup_job) (molibackup_report_estimated_monthly_cost_dollars{{{JOB}}})",
     "{{molibackup_job}}"),
    ("Cost and hygiene", "Snapshots by tier", "short",
     f"sum by (molibackup_job, tier) (molibackup_job_snapshots_stored{{{JOB}}})",
     "{{molibackup_job}} {{tier}}"),
    ("Cost and hygiene", "Orphaned volumes", "short",
     f"max by (molibackup_job) (molibackup_job_orphaned_volumes{{{JOB}}})",
     "{{molibackup_job}}"),
    ("Cost and hygiene", "Snapshot quota used", "percentunit",
     f"max by (molibackup_job) (molibackup_report_account_snapshots{{{JOB}}} / "
     f"molibackup_report_snapshot_quota{{{JOB}}})", "{{molibackup_job}}"),
)
STATS = frozenset({"Orphaned volumes", "Snapshot quota used",
                   "Estimated monthly cost (USD, at global.prices)"})


def build() -> Dashboard:
    dashboard = (
        Dashboard("molibackup")
        .uid("molibackup")
        .tags(["molibackup", "backup", "ebs"])
        .refresh("5m")
        .time("now-7d", "now")
        .with_variable(QueryVariable("job").label("Job").datasource(DATASOURCE)
                       .query("label_values(molibackup_job_success, molibackup_job)")
                       .multi(True).include_all(True).all_value(".*"))
    )
    row = None
    for row_title, title, unit, expr, legend in PANELS:
        if row_title != row:
            dashboard = dashboard.with_row(Row(row_title))
            row = row_title
        panel = (Stat() if title in STATS else Timeseries()).title(title).unit(unit)
        dashboard = dashboard.with_panel(panel.datasource(DATASOURCE).with_target(
            Dataquery().expr(expr).legend_format(legend).ref_id("A")))
    return dashboard


def render() -> str:
    document = json.loads(JSONEncoder(sort_keys=True, indent=2).encode(build().build()))
    document["templating"]["list"].insert(0, {
        "name": "datasource", "label": "Data source", "type": "datasource",
        "query": "prometheus"})
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def queries(document: dict[str, object]) -> list[str]:
    """Every panel's query, as the dashboard holds them."""
    return [str(target["expr"]) for panel in document["panels"]  # type: ignore[attr-defined]
            for target in panel.get("targets", [])]


def main() -> int:
    OUTPUT.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
