"""SiteTls: the site's private CA and cert-manager, so in-cluster services (the site's object storage) serve
TLS with certificates that renew on site. The CA key is generated once on the machine running Pulumi and
kept in state as a secret; its public certificate is distributed to every client namespace."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from components.addons import helm_chart, namespace
from components.kube import meta
from components.secrets import secret_output
from edgefm.profile import ChartRef

CERT_MANAGER_NAMESPACE = "cert-manager"
CA_SECRET = "edgefm-site-ca"
ISSUER = "edgefm-site-ca"
# A P-256 CA valid for ten years; the command text is a resource input, so it stays the same everywhere.
_MAKE_CA = (
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 "
    '-subj "/CN=edgefm site CA" -addext "basicConstraints=critical,CA:TRUE" '
    '-addext "keyUsage=critical,keyCertSign,cRLSign" -keyout /dev/stdout -out /dev/stdout 2>/dev/null'
)
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----\n?", re.S)


def pem_block(text: str, kind: str) -> str:
    """The first PEM block of `kind` (e.g. CERTIFICATE, PRIVATE KEY) in `text`."""
    for match in _PEM.finditer(text):
        if match.group(1) == kind:
            return match.group(0) if match.group(0).endswith("\n") else match.group(0) + "\n"
    raise ValueError(f"no {kind} PEM block in the generated CA")


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
        generated = command.local.Command(
            f"{name}-ca",
            create=_MAKE_CA,
            logging=command.local.Logging.NONE,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stdout"]),
        )
        pem = secret_output(generated.stdout)
        # The certificate is public: unwrap it so it can go into ConfigMaps in every client namespace.
        self.ca_certificate = pulumi.Output.unsecret(pem.apply(lambda t: pem_block(t, "CERTIFICATE")))
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
                "tls.crt": pem.apply(lambda t: pem_block(t, "CERTIFICATE")),
                "tls.key": pem.apply(lambda t: pem_block(t, "PRIVATE KEY")),
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
