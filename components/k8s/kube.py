"""Shared Kubernetes conventions: labels every object carries and metadata built from them."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

PART_OF = "app.kubernetes.io/part-of"
SITE_LABEL = "edgefm.io/site"
SYSTEM_NAMESPACE = "edgefm-system"
WORKLOAD_NAMESPACE = "edgefm"


def labels(site: str, component: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Labels on every object edgefm creates: site and part-of let policies and dashboards find them."""
    out = {
        PART_OF: "edgefm",
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/component": component,
        SITE_LABEL: site,
    }
    out.update(extra or {})
    return out


def meta(
    name: str,
    site: str,
    component: str,
    namespace: pulumi.Input[str] | None = None,
    extra_labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> k8s.meta.v1.ObjectMetaArgs:
    return k8s.meta.v1.ObjectMetaArgs(
        name=name,
        namespace=namespace,
        labels=labels(site, component, extra_labels),
        annotations=dict(annotations) if annotations else None,
    )


def kubernetes_provider(
    name: str,
    parent: pulumi.Resource,
    *,
    render_dir: str | None,
    kubeconfig: pulumi.Input[str] | None,
    mutable_secrets: bool = False,
) -> k8s.Provider:
    """The cluster's provider: rendering manifests to `render_dir`, or talking to the cluster `kubeconfig` names.
    The provider replaces a Secret whose data changes (so Deployments that mount it roll) unless `mutable_secrets`:
    for Secrets whose readers pick changes up themselves, an update in place."""
    opts = pulumi.ResourceOptions(parent=parent)
    mutable = True if mutable_secrets else None
    if render_dir is not None:
        return k8s.Provider(
            f"{name}-k8s", render_yaml_to_directory=render_dir, enable_secret_mutable=mutable, opts=opts
        )
    if kubeconfig is None:
        raise ValueError(f"{name}: the cluster needs a kubeconfig or a render directory")
    return k8s.Provider(
        f"{name}-k8s", kubeconfig=pulumi.Output.secret(kubeconfig), enable_secret_mutable=mutable, opts=opts
    )


def selector(site: str, component: str) -> dict[str, str]:
    """The stable subset of labels used in selectors (selectors are immutable on Deployments)."""
    return {"app.kubernetes.io/component": component, SITE_LABEL: site}


def ingress_rule(
    host: str, service: pulumi.Input[str], port: int, path: str = "/"
) -> k8s.networking.v1.IngressRuleArgs:
    return k8s.networking.v1.IngressRuleArgs(
        host=host,
        http=k8s.networking.v1.HTTPIngressRuleValueArgs(
            paths=[
                k8s.networking.v1.HTTPIngressPathArgs(
                    path=path,
                    path_type="Prefix",
                    backend=k8s.networking.v1.IngressBackendArgs(
                        service=k8s.networking.v1.IngressServiceBackendArgs(
                            name=service, port=k8s.networking.v1.ServiceBackendPortArgs(number=port)
                        )
                    ),
                )
            ]
        ),
    )


def pod_security(run_as_user: int) -> k8s.core.v1.PodSecurityContextArgs:
    """The pod half of the Pod Security Standard `restricted`: a fixed non-root user, the runtime's seccomp
    profile. `run_as_user` is the image's own unprivileged user, so files the image owns stay readable."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=run_as_user,
        run_as_group=run_as_user,
        fs_group=run_as_user,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def container_security(read_only_root: bool = False) -> k8s.core.v1.SecurityContextArgs:
    """The container half of `restricted`: no privilege escalation, no capabilities."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        run_as_non_root=True,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        read_only_root_filesystem=read_only_root or None,
    )
