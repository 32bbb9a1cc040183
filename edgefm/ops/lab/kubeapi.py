"""The few Kubernetes API calls the lab makes, over `requests` with the lab's client certificate.

Objects are written with server-side apply (one field manager, `edgefm-lab`), so `lab up` can re-apply the same
nodes and CRDs any number of times. `patch` and `delete` change any object as an operator's kubectl would (how a
site drifts from what its stack declares).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

FIELD_MANAGER = "edgefm-lab"
TIMEOUT = 10.0

# Where each kind the lab writes lives in the API (group/version path, plural, namespaced).
_PATHS: dict[str, tuple[str, str, bool]] = {
    "Node": ("api/v1", "nodes", False),
    "Namespace": ("api/v1", "namespaces", False),
    "CustomResourceDefinition": ("apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
}


class KubeApiError(RuntimeError):
    pass


@dataclass(frozen=True)
class Credentials:
    server: str
    ca: Path
    cert: Path
    key: Path


class KubeApi:
    def __init__(self, creds: Credentials) -> None:
        self.server = creds.server.rstrip("/")
        self.session = requests.Session()
        self.session.verify = str(creds.ca)
        self.session.cert = (str(creds.cert), str(creds.key))
        # Only the lab's own loopback servers are ever addressed: never a proxy from the environment.
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()

    def ready(self) -> bool:
        try:
            return self.session.get(f"{self.server}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        try:
            resp = self.session.get(f"{self.server}/{path.lstrip('/')}", params=params, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise KubeApiError(f"GET {path}: {exc}") from None
        if resp.status_code != 200:
            raise KubeApiError(f"GET {path}: {resp.status_code} {resp.text[:200]}")
        body: dict[str, Any] = resp.json()
        return body

    def items(self, path: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(path, params).get("items") or []
        return items

    def apply(self, obj: Mapping[str, Any], *, status: bool = False) -> dict[str, Any]:
        """Server-side apply of a cluster-scoped object of a kind in `_PATHS` (or its status subresource)."""
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        if kind not in _PATHS:
            raise KubeApiError(f"the lab does not apply {kind} objects")
        prefix, plural, _ = _PATHS[kind]
        path = f"{self.server}/{prefix}/{plural}/{name}" + ("/status" if status else "")
        try:
            resp = self.session.patch(
                path,
                params={"fieldManager": FIELD_MANAGER, "force": "true"},
                data=json.dumps(obj),
                headers={"Content-Type": "application/apply-patch+yaml"},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise KubeApiError(f"apply {kind} {name}: {exc}") from None
        if resp.status_code not in (200, 201):
            raise KubeApiError(f"apply {kind} {name}: {resp.status_code} {resp.text[:300]}")
        body: dict[str, Any] = resp.json()
        return body

    def patch(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        patch_type: str = "merge",
        field_manager: str = FIELD_MANAGER,
        force: bool = False,
    ) -> dict[str, Any]:
        """PATCH any object by its API path: `merge` (JSON merge patch), `strategic`, or `apply` (server-side
        apply; `force` takes fields over from other managers). What an operator's kubectl does to a cluster."""
        types = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "apply": "application/apply-patch+yaml",
        }
        params = {"fieldManager": field_manager, **({"force": "true"} if force else {})}
        try:
            resp = self.session.patch(
                f"{self.server}/{path.lstrip('/')}",
                params=params,
                data=json.dumps(body),
                headers={"Content-Type": types[patch_type]},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise KubeApiError(f"PATCH {path}: {exc}") from None
        if resp.status_code != 200:
            raise KubeApiError(f"PATCH {path}: {resp.status_code} {resp.text[:300]}")
        patched: dict[str, Any] = resp.json()
        return patched

    def delete(self, path: str) -> None:
        """DELETE an object by its API path (a 404 is an error: the caller expected it to exist)."""
        try:
            resp = self.session.delete(f"{self.server}/{path.lstrip('/')}", timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise KubeApiError(f"DELETE {path}: {exc}") from None
        if resp.status_code not in (200, 202):
            raise KubeApiError(f"DELETE {path}: {resp.status_code} {resp.text[:300]}")
