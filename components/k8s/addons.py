"""Add-ons as objects the cluster reconciles itself, so preview and update never download a chart.

k3s (and plain Kubernetes with the same controller) installs `helm.cattle.io/v1` HelmChart objects;
OpenShift installs operators from OLM `Subscription`s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.k8s.kube import meta
from edgefm.model.profile import ChartRef, OlmRef

# k3s's helm-controller watches HelmChart objects in kube-system.
HELM_CHART_NAMESPACE = "kube-system"


def helm_chart(
    name: str,
    *,
    chart: ChartRef,
    target_namespace: pulumi.Input[str],
    values: Mapping[str, Any],
    site: str,
    component: str,
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """A HelmChart object; `valuesContent` is YAML text as helm-controller expects."""
    return k8s.apiextensions.CustomResource(
        name,
        api_version="helm.cattle.io/v1",
        kind="HelmChart",
        metadata=meta(name, site, component, HELM_CHART_NAMESPACE),
        spec={
            "repo": chart.repo,
            "chart": chart.chart,
            "version": chart.version,
            "targetNamespace": target_namespace,
            "createNamespace": False,
            "valuesContent": yaml.safe_dump(dict(values), sort_keys=True),
        },
        opts=opts,
    )


def olm_subscription(
    name: str,
    *,
    operator: OlmRef,
    namespace: str,
    site: str,
    component: str,
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """An OperatorGroup plus a Subscription pinned to one CSV with manual approval, so nothing floats."""
    group = k8s.apiextensions.CustomResource(
        f"{name}-group",
        api_version="operators.coreos.com/v1",
        kind="OperatorGroup",
        metadata=meta(f"{name}-group", site, component, namespace),
        spec={"targetNamespaces": [namespace]},
        opts=opts,
    )
    return k8s.apiextensions.CustomResource(
        name,
        api_version="operators.coreos.com/v1alpha1",
        kind="Subscription",
        metadata=meta(name, site, component, namespace),
        spec={
            "name": operator.package,
            "channel": operator.channel,
            "source": operator.source,
            "sourceNamespace": "openshift-marketplace",
            "startingCSV": operator.starting_csv,
            # Manual approval stops OLM from upgrading past the pinned CSV on its own.
            "installPlanApproval": "Manual",
        },
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[group])),
    )


def namespace(
    name: str, site: str, component: str, opts: pulumi.ResourceOptions, privileged: bool = False
) -> k8s.core.v1.Namespace:
    extra = {}
    if privileged:
        # The GPU operator's driver and toolkit pods need host access; Pod Security must allow it here only.
        extra = {"pod-security.kubernetes.io/enforce": "privileged"}
    return k8s.core.v1.Namespace(
        f"{site}-ns-{name}", metadata=meta(name, site, component, extra_labels=extra), opts=opts
    )
