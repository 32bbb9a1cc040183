"""IAM-style policy documents (AWS IAM, S3 bucket policies and MinIO policies share the grammar)."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from edgefm_guardrails.model import Unknown, as_list, as_mapping


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    principal: Any
    condition: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"statement {self.sid!r}" if self.sid else "a statement"


class PolicyDocumentError(ValueError):
    pass


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in as_list(value))


def load_document(value: Any) -> Mapping[str, Any] | Unknown | None:
    """A policy given as JSON text or as a mapping; None if absent, UNKNOWN if computed at preview."""
    if isinstance(value, Unknown):
        return value
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PolicyDocumentError(f"policy is not valid JSON: {exc}") from None
        if not isinstance(doc, Mapping):
            raise PolicyDocumentError("policy JSON is not an object")
        return doc
    if isinstance(value, Mapping):
        return value
    raise PolicyDocumentError(f"policy is neither JSON text nor an object: {type(value).__name__}")


def statements(doc: Mapping[str, Any]) -> list[Statement]:
    raw = doc.get("Statement")
    items = [raw] if isinstance(raw, Mapping) else as_list(raw)
    out: list[Statement] = []
    for item in items:
        st = as_mapping(item)
        out.append(
            Statement(
                sid=str(st.get("Sid") or ""),
                effect=str(st.get("Effect") or ""),
                actions=_strings(st.get("Action")),
                not_actions=_strings(st.get("NotAction")),
                resources=_strings(st.get("Resource")),
                not_resources=_strings(st.get("NotResource")),
                principal=st.get("Principal"),
                condition=as_mapping(st.get("Condition")),
            )
        )
    return out


def is_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def action_matches(pattern: str, action: str) -> bool:
    # IAM action names are case-insensitive; `*` and `?` are the only wildcards.
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def resource_matches(pattern: str, arn: str) -> bool:
    return fnmatch.fnmatchcase(arn, pattern)


def principal_is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any(v == "*" or (isinstance(v, list) and "*" in v) for v in principal.values())
    return False


S3_ARN: Final = "arn:aws:s3:::"


def reaches_bucket(pattern: str, bucket: str) -> bool:
    """Whether a resource pattern names the bucket or any object in it: a grant on one key prefix
    (`arn:aws:s3:::models/site-a/*`) reaches the bucket as surely as one on all of it."""
    if resource_matches(pattern, f"{S3_ARN}{bucket}") or resource_matches(pattern, f"{S3_ARN}{bucket}/x"):
        return True
    if not pattern.startswith(S3_ARN) and pattern != "*":
        return False
    rest = pattern.removeprefix(S3_ARN)
    head, slash, _key = rest.partition("/")
    return bool(slash) and fnmatch.fnmatchcase(bucket, head)


def covers_bucket(st: Statement, bucket: str) -> bool:
    """Whether a statement's resources reach the bucket or any object in it."""
    probe = (f"{S3_ARN}{bucket}", f"{S3_ARN}{bucket}/x")
    if st.not_resources:
        # NotResource grants everything except the listed ARNs: it reaches the bucket unless excluded.
        return not any(resource_matches(p, a) for p in st.not_resources for a in probe)
    return any(reaches_bucket(p, bucket) for p in st.resources)
