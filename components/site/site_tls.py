"""SiteTls: the site's private CA and cert-manager, so in-cluster services (the site's object storage) serve
TLS with certificates that renew on site. The CA is generated once when the stack is first updated and kept
in state (its key as a secret); its public certificate is distributed to every client namespace."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.addons import helm_chart, namespace
from components.k8s.dynamic_providers import CertificateAuthority
from components.k8s.kube import meta
from components.k8s.secrets import secret_output
from edgefm.model.profile import ChartRef

CERT_MANAGER_NAMESPACE = "cert-manager"
CA_SECRET = "edgefm-site-ca"
ISSUER = "edgefm-site-ca"


@dataclass
class SiteTlsArgs:
    site: str
    cert_manager_chart: ChartRef


class SiteTls(pulumi.ComponentResource):
    issuer: str
    ca_certificate: pulumi.Output[str]

    def __init__(self, name: str, args: SiteTlsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:SiteTls", name, None, opts)
        site, comp = args.site, "tls"
        child = pulumi.ResourceOptions(parent=self)
        ca_pair = CertificateAuthority(
            f"{name}-ca", common_name=f"edgefm {site} site CA", opts=pulumi.ResourceOptions(parent=self)
        )
        # The certificate is public: it goes into ConfigMaps in every client namespace.
        self.ca_certificate = ca_pair.certificate
        ns = namespace(CERT_MANAGER_NAMESPACE, site, comp, child)
        chart = helm_chart(
            f"{name}-cert-manager",
            chart=args.cert_manager_chart,
            target_namespace=ns.metadata.name,
            site=site,
            component=comp,
            values={
                "crds": {"enabled": True, "keep": True},
                "resources": {
                    "requests": {"cpu": "50m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "512Mi"},
                },
            },
            opts=child,
        )
        ca = k8s.core.v1.Secret(
            f"{name}-ca-secret",
            metadata=meta(CA_SECRET, site, comp, ns.metadata.name),
            type="kubernetes.io/tls",
            string_data={
                "tls.crt": ca_pair.certificate,
                "tls.key": secret_output(ca_pair.private_key),
            },
            opts=child,
        )
        # A ClusterIssuer reads its CA Secret from cert-manager's own namespace.
        k8s.apiextensions.CustomResource(
            f"{name}-issuer",
            api_version="cert-manager.io/v1",
            kind="ClusterIssuer",
            metadata=meta(ISSUER, site, comp),
            spec={"ca": {"secretName": CA_SECRET}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[chart, ca]),
        )
        self.issuer = ISSUER
        self.register_outputs({"issuer": self.issuer, "caCertificate": self.ca_certificate})
