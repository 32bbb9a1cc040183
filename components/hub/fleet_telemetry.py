"""FleetTelemetry: the hub's receiver for every site's Prometheus remote-write, and Grafana with the fleet
dashboard. Each site writes to its own path, `/sites/<site>/api/v1/write`, through an Ingress and a basic-auth
Secret that its access shard owns (`SiteAccessShard`): nothing here lists the sites."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.hub.fleet_dashboard import fleet_dashboard_json
from components.k8s.addons import helm_chart
from components.k8s.kube import ingress_rule, meta
from edgefm.model.profile import ChartRef
from edgefm.model.stacks import HUB_STACK

REMOTE_WRITE_PATH = "/api/v1/write"


@dataclass
class FleetTelemetryArgs:
    namespace: pulumi.Input[str]
    telemetry_host: str
    grafana_host: str
    prometheus_chart: ChartRef
    grafana_chart: ChartRef
    retention_days: int
    size_gi: int
    grafana_admin_password: pulumi.Input[str]
    tls_secret: str = "edgefm-hub-tls"


def prometheus_service(name: str) -> str:
    """The Prometheus server's Service for a FleetTelemetry named `name` (site ingresses point at it)."""
    return f"{name}-prometheus"


def site_write_path(site: str) -> str:
    return f"/sites/{site}{REMOTE_WRITE_PATH}"


def site_write_url(telemetry_host: str, site: str) -> str:
    return f"https://{telemetry_host}{site_write_path(site)}"


class FleetTelemetry(pulumi.ComponentResource):
    telemetry_host: str
    grafana_url: str
    prometheus_service: str

    def __init__(self, name: str, args: FleetTelemetryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:hub:FleetTelemetry", name, None, opts)
        comp = "telemetry"
        child = pulumi.ResourceOptions(parent=self)
        self.telemetry_host = args.telemetry_host
        self.grafana_url = f"https://{args.grafana_host}"
        prometheus = self.prometheus_service = prometheus_service(name)

        helm_chart(
            prometheus,
            chart=args.prometheus_chart,
            target_namespace=args.namespace,
            site=HUB_STACK,
            component=comp,
            values={
                "server": {
                    "fullnameOverride": prometheus,
                    "extraFlags": ["web.enable-lifecycle", "web.enable-remote-write-receiver"],
                    "retention": f"{args.retention_days}d",
                    "persistentVolume": {"size": f"{args.size_gi}Gi"},
                    "resources": {
                        "requests": {"cpu": "1", "memory": "4Gi"},
                        "limits": {"cpu": "4", "memory": "16Gi"},
                    },
                },
                "alertmanager": {"enabled": False},
                "prometheus-pushgateway": {"enabled": False},
                "kube-state-metrics": {"enabled": True},
                "prometheus-node-exporter": {"enabled": True},
            },
            opts=child,
        )
        grafana = f"{name}-grafana"
        admin = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=meta("grafana-admin", HUB_STACK, comp, args.namespace),
            string_data={
                "admin-user": "admin",
                "admin-password": pulumi.Output.secret(args.grafana_admin_password),
            },
            opts=child,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata=meta(
                "edgefm-fleet-dashboard", HUB_STACK, comp, args.namespace, extra_labels={"grafana_dashboard": "1"}
            ),
            data={"edgefm-fleet.json": fleet_dashboard_json()},
            opts=child,
        )
        helm_chart(
            grafana,
            chart=args.grafana_chart,
            target_namespace=args.namespace,
            site=HUB_STACK,
            component=comp,
            values={
                "fullnameOverride": grafana,
                "admin": {
                    "existingSecret": "grafana-admin",
                    "userKey": "admin-user",
                    "passwordKey": "admin-password",
                },
                "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard", "labelValue": "1"}},
                "datasources": {
                    "datasources.yaml": {
                        "apiVersion": 1,
                        "datasources": [
                            {
                                "name": "fleet",
                                "uid": "fleet",
                                "type": "prometheus",
                                "url": f"http://{prometheus}:80",
                                "isDefault": True,
                            }
                        ],
                    }
                },
                "persistence": {"enabled": True, "size": "10Gi"},
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[admin]),
        )
        k8s.networking.v1.Ingress(
            f"{name}-grafana",
            metadata=meta("grafana", HUB_STACK, comp, args.namespace),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name="nginx",
                tls=[k8s.networking.v1.IngressTLSArgs(hosts=[args.grafana_host], secret_name=args.tls_secret)],
                rules=[ingress_rule(args.grafana_host, grafana, 80)],
            ),
            opts=child,
        )
        self.register_outputs({"telemetryHost": self.telemetry_host, "grafanaUrl": self.grafana_url})
