"""ApplianceCluster: the site's Kubernetes — HA k3s bootstrapped over SSH, or an existing cluster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from components.k8s.helm_controller import HelmController, HelmControllerArgs
from components.k8s.kube import kubernetes_provider
from components.k8s.secrets import secret_output
from edgefm.model.profile import K3sSettings


@dataclass(frozen=True)
class ApplianceNode:
    name: str
    address: str


@dataclass
class ApplianceClusterArgs:
    site: str
    mode: Literal["k3s", "existing"]
    distribution: Literal["k3s", "kubernetes", "openshift"]
    nodes: Sequence[ApplianceNode]
    api_address: str
    k3s: K3sSettings
    helm_controller_image: str
    ssh_user: str = "edgefm"
    ssh_private_key: pulumi.Input[str] | None = None
    kubeconfig: pulumi.Input[str] | None = None
    # When set, the provider writes manifests here instead of applying them, and nothing touches machines.
    render_dir: str | None = None


def _install_script(args: ApplianceClusterArgs, node: ApplianceNode, first: bool, first_address: str) -> str:
    """An idempotent install: exits early when the pinned version already runs on the node."""
    version = args.k3s.version
    sans = " ".join(f"--tls-san {s}" for s in [args.api_address, *args.k3s.tls_san])
    role = "--cluster-init" if first else f"--server https://{first_address}:6443"
    fetch = f'curl -sfL "{args.k3s.install_script_url}" -o /tmp/edgefm-k3s-install.sh'
    env = f'INSTALL_K3S_VERSION="{version}"'
    if args.k3s.artifact_url:
        # Air-gapped: the binary comes from the site mirror and the installer must not download it.
        fetch += (
            f' && sudo curl -sfL "{args.k3s.artifact_url}/{version}/k3s" -o /usr/local/bin/k3s'
            " && sudo chmod 0755 /usr/local/bin/k3s"
        )
        env += " INSTALL_K3S_SKIP_DOWNLOAD=true"
    token = "" if first else ' K3S_TOKEN="$EDGEFM_K3S_TOKEN"'
    return (
        "set -eu\n"
        f'if command -v k3s >/dev/null 2>&1 && k3s --version | grep -qF "{version}"; then\n'
        f'  echo "k3s {version} already running on {node.name}"; exit 0\n'
        "fi\n"
        f"{fetch}\n"
        f"sudo {env}{token} sh /tmp/edgefm-k3s-install.sh server {role} {sans} "
        f"--node-name {node.name} --node-ip {node.address} --write-kubeconfig-mode 0600\n"
    )


class ApplianceCluster(pulumi.ComponentResource):
    """Yields the site's Kubernetes provider; on k3s, bootstraps the cluster first (first server
    initialises embedded etcd, the others join one at a time so an upgrade rolls node by node)."""

    provider: k8s.Provider
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: ApplianceClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:ApplianceCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.render_dir is not None:
            kubeconfig: pulumi.Output[str] = pulumi.Output.secret("")
        elif args.mode == "k3s":
            kubeconfig = self._bootstrap_k3s(name, args, child)
        elif args.kubeconfig is not None:
            kubeconfig = pulumi.Output.secret(args.kubeconfig)
        else:
            raise ValueError(f"{name}: an existing cluster needs a kubeconfig")
        self.provider = kubernetes_provider(
            name, self, render_dir=args.render_dir, kubeconfig=None if args.render_dir else kubeconfig
        )
        self.kubeconfig = kubeconfig

        if args.distribution == "kubernetes":
            HelmController(
                f"{name}-helm-controller",
                HelmControllerArgs(site=args.site, image=args.helm_controller_image),
                pulumi.ResourceOptions(parent=self, providers=[self.provider]),
            )
        self.register_outputs({"kubeconfig": self.kubeconfig})

    def _bootstrap_k3s(
        self, name: str, args: ApplianceClusterArgs, child: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        if args.ssh_private_key is None:
            raise ValueError(f"{name}: bootstrapping k3s needs an SSH private key")

        def connection(node: ApplianceNode) -> command.remote.ConnectionArgs:
            return command.remote.ConnectionArgs(
                host=node.address, user=args.ssh_user, private_key=args.ssh_private_key, dial_error_limit=20
            )

        first = args.nodes[0]
        first_install = command.remote.Command(
            f"{name}-install-{first.name}",
            connection=connection(first),
            create=_install_script(args, first, True, first.address),
            # A version or installer change re-runs the installer, which upgrades in place.
            triggers=[args.k3s.version, args.k3s.install_script_url, args.k3s.artifact_url or ""],
            opts=child,
        )
        token = command.remote.Command(
            f"{name}-token",
            connection=connection(first),
            create="sudo cat /var/lib/rancher/k3s/server/token",
            logging=command.remote.Logging.NONE,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[first_install], additional_secret_outputs=["stdout"]),
        )
        previous: pulumi.Resource = token
        for node in args.nodes[1:]:
            previous = command.remote.Command(
                f"{name}-install-{node.name}",
                connection=connection(node),
                create=_install_script(args, node, False, first.address),
                environment={"EDGEFM_K3S_TOKEN": secret_output(token.stdout)},
                triggers=[args.k3s.version, args.k3s.install_script_url, args.k3s.artifact_url or ""],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[previous]),
            )
        raw = command.remote.Command(
            f"{name}-kubeconfig",
            connection=connection(first),
            create="sudo cat /etc/rancher/k3s/k3s.yaml",
            logging=command.remote.Logging.NONE,
            triggers=[args.k3s.version],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[previous], additional_secret_outputs=["stdout"]),
        )
        # k3s writes a loopback server address; clients reach the API on the site address instead.
        api = args.api_address
        return pulumi.Output.secret(
            raw.stdout.apply(lambda text: text.replace("https://127.0.0.1:6443", f"https://{api}:6443"))
        )
