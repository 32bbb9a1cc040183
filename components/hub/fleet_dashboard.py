"""The hub's Grafana fleet dashboard, generated so its queries use the labels the site agents attach."""

from __future__ import annotations

import json
from typing import Any

# (title, PromQL, unit): every series is keyed by the `site` external label the agents add.
PANELS: list[tuple[str, str, str]] = [
    ("Sites reporting", "count(count by (site) (up))", "none"),
    ("Scrape targets up by site", "sum by (site) (up)", "none"),
    ("Inference requests/s by site", "sum by (site) (rate(nv_inference_request_success[5m]))", "reqps"),
    ("Failed inferences/s by site", "sum by (site) (rate(nv_inference_request_failure[5m]))", "reqps"),
    (
        "Mean inference latency by site",
        "sum by (site) (rate(nv_inference_request_duration_us[5m]))"
        " / clamp_min(sum by (site) (rate(nv_inference_count[5m])), 1) / 1000",
        "ms",
    ),
    ("GPU utilisation by site", "avg by (site) (DCGM_FI_DEV_GPU_UTIL)", "percent"),
    ("GPU memory used by site", "sum by (site) (DCGM_FI_DEV_FB_USED) * 1024 * 1024", "bytes"),
    (
        "Node CPU busy by site",
        "1 - avg by (site) (rate(node_cpu_seconds_total{mode='idle'}[5m]))",
        "percentunit",
    ),
    (
        "Node filesystem free by site",
        "min by (site) (node_filesystem_avail_bytes / node_filesystem_size_bytes)",
        "percentunit",
    ),
]


def fleet_dashboard() -> dict[str, Any]:
    panels = []
    for i, (title, expr, unit) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "title": title,
                "type": "stat" if i == 0 else "timeseries",
                "datasource": {"type": "prometheus", "uid": "fleet"},
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"expr": expr, "legendFormat": "{{site}}", "refId": "A"}],
            }
        )
    return {
        "uid": "edgefm-fleet",
        "title": "edgefm fleet",
        "tags": ["edgefm"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "1m",
        "templating": {"list": []},
        "panels": panels,
    }


def fleet_dashboard_json() -> str:
    return json.dumps(fleet_dashboard(), sort_keys=True)
