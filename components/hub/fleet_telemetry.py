"""FleetTelemetry: the hub's receiver for every site's Prometheus remote-write, and Grafana with the fleet
dashboard. Sites authenticate with their registry key over TLS."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.hub.fleet_dashboard import fleet_dashboard_json
from components.hub.site_credential import SiteCredential
from components.k8s.addons import helm_chart
from components.k8s.kube import ingress_rule, meta
from components.k8s.secrets import secret_output
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
    site_credentials: Mapping[str, SiteCredential]
    tls_secret: str = "edgefm-hub-tls"


def ssha_entry(user: str, password: str) -> str:
    """An htpasswd line in nginx's {SSHA} form; the salt is derived from the user so the line is stable
    across updates (a random salt would show a diff on every preview)."""
    salt = hashlib.sha256(f"edgefm-htpasswd:{user}".encode()).digest()[:8]
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}"


class FleetTelemetry(pulumi.ComponentResource):
    remote_write_url: str
    grafana_url: str

    def __init__(self, name: str, args: FleetTelemetryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:hub:FleetTelemetry", name, None, opts)
        comp = "telemetry"
        child = pulumi.ResourceOptions(parent=self)
        self.remote_write_url = f"https://{args.telemetry_host}{REMOTE_WRITE_PATH}"
        self.grafana_url = f"https://{args.grafana_host}"
        prometheus = f"{name}-prometheus"

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
        usernames = list(args.site_credentials)
        pairs = pulumi.Output.all(*[args.site_credentials[u].secret_access_key for u in usernames])
        key_ids = pulumi.Output.all(*[args.site_credentials[u].access_key_id for u in usernames])
        htpasswd = secret_output(
            pulumi.Output.all(key_ids, pairs).apply(
                lambda kv: "".join(ssha_entry(k, p) + "\n" for k, p in zip(kv[0], kv[1], strict=True))
            )
        )
        auth = k8s.core.v1.Secret(
            f"{name}-remote-write-auth",
            metadata=meta("remote-write-auth", HUB_STACK, comp, args.namespace),
            string_data={"auth": htpasswd},
            opts=child,
        )
        k8s.networking.v1.Ingress(
            f"{name}-remote-write",
            metadata=meta(
                "remote-write",
                HUB_STACK,
                comp,
                args.namespace,
                annotations={
                    "nginx.ingress.kubernetes.io/auth-type": "basic",
                    "nginx.ingress.kubernetes.io/auth-secret": "remote-write-auth",
                    "nginx.ingress.kubernetes.io/auth-realm": "edgefm remote write",
                    "nginx.ingress.kubernetes.io/proxy-body-size": "16m",
                },
            ),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name="nginx",
                tls=[k8s.networking.v1.IngressTLSArgs(hosts=[args.telemetry_host], secret_name=args.tls_secret)],
                # Only the write endpoint is exposed; queries stay inside the hub (Grafana).
                rules=[ingress_rule(args.telemetry_host, prometheus, 80, REMOTE_WRITE_PATH)],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[auth]),
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
        self.register_outputs({"remoteWriteUrl": self.remote_write_url, "grafanaUrl": self.grafana_url})
