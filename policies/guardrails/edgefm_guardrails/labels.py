"""Labels (advisory): every Kubernetes object says it is part of edgefm and which site it belongs to, so
fleet queries (`kubectl get -l edgefm.io/site=...`, telemetry relabelling) find it."""

from __future__ import annotations

from typing import Final

from edgefm_guardrails.config import LabelsConfig
from edgefm_guardrails.kube import PART_OF, SITE_LABEL, is_kube_object, labels_of
from edgefm_guardrails.model import UNKNOWN, Resource, Violation, get, site_of_stack

PART_OF_VALUE: Final = "edgefm"


def check_labels(r: Resource, cfg: LabelsConfig) -> list[Violation]:
    if not is_kube_object(r):
        return []
    if get(r.props, "metadata", "labels") is UNKNOWN:
        return []  # computed labels: judged at update time, when they are known
    have = labels_of(r)
    problems: list[str] = []
    if have.get(PART_OF) != PART_OF_VALUE:
        problems.append(f"{PART_OF}={PART_OF_VALUE} (has {have.get(PART_OF)!r})")
    expected_site = site_of_stack(r.stack)
    site = have.get(SITE_LABEL)
    if site is not UNKNOWN:
        if not isinstance(site, str) or not site:
            problems.append(f"{SITE_LABEL}={expected_site or '<site>'} (missing)")
        elif expected_site is not None and site != expected_site:
            problems.append(f"{SITE_LABEL}={expected_site} (has {site!r}, but the stack is {r.stack})")
    for key in cfg.additional_labels:
        value = have.get(key)
        if value is not UNKNOWN and (not isinstance(value, str) or not value):
            problems.append(f"{key} (missing)")
    if not problems:
        return []
    return [Violation(f"{r.label} lacks required labels: {'; '.join(problems)}", r.urn)]
