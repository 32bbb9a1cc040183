"""HelmController: k3s's helm-controller run on plain Kubernetes, so HelmChart objects work on every cluster
edgefm manages and no chart is ever downloaded by the machine running Pulumi."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.kube import container_security, meta, pod_security

HELM_CONTROLLER_NAMESPACE = "helm-controller"


@dataclass
class HelmControllerArgs:
    site: str
    image: str


class HelmController(pulumi.ComponentResource):
    def __init__(self, name: str, args: HelmControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:cluster:HelmController", name, None, opts)
        site, comp = args.site, "helm-controller"
        child = pulumi.ResourceOptions(parent=self)
        ns = k8s.core.v1.Namespace(f"{name}-ns", metadata=meta(HELM_CONTROLLER_NAMESPACE, site, comp), opts=child)
        namespace = ns.metadata.name
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=meta("helm-controller", site, comp, namespace), opts=child
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-crb",
            metadata=meta(f"edgefm-helm-controller-{site}", site, comp),
            # helm-controller installs arbitrary charts, so it needs cluster-admin, as it has inside k3s.
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=sa.metadata.name, namespace=namespace)],
            opts=child,
        )
        match = {"app.kubernetes.io/component": comp, "edgefm.io/site": site}
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta("helm-controller", site, comp, namespace),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=meta("helm-controller", site, comp),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=sa.metadata.name,
                        # A controller that only talks to the API server: no root, no capabilities.
                        security_context=pod_security(65534),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="helm-controller",
                                image=args.image,
                                # Watch kube-system, where edgefm (like k3s) puts HelmChart objects.
                                args=["helm-controller", "--namespace", "kube-system"],
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "50m", "memory": "64Mi"},
                                    limits={"cpu": "500m", "memory": "256Mi"},
                                ),
                                security_context=container_security(),
                            )
                        ],
                    ),
                ),
            ),
            opts=child,
        )
        self.register_outputs({})
