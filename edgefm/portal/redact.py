"""Keeps secret values off pages, event streams and the audit log.

Engine events carry resource inputs and outputs, and `up`/`refresh`/`destroy` show secrets in them by
default. Everything the portal shows passes through `redact` first: values the engine marks secret, values
under a key that names a credential, and text that holds a private key or a kubeconfig's credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from edgefm.model.stacks import SECRET_KEYS

REDACTED = "[secret]"
# The engine's marker for a secret value in serialized property maps.
SECRET_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_KEY = re.compile(
    r"(password|passwd|passphrase|secret|token|private[-_]?key|credential|kubeconfig|seed|access[-_]?key"
    r"|client[-_]?key|api[-_]?key|certificate[-_]?key|tls\.key|ssh[-_]?key)",
    re.IGNORECASE,
)
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.DOTALL)
_KUBE_CRED = re.compile(r"((client-key-data|client-certificate-data|token|password)\s*:\s*)\S+", re.IGNORECASE)
_ASSIGN = re.compile(
    r"\b([\w.-]*(password|passphrase|secret|token|seed|access[-_]?key)[\w.-]*)\s*([=:])\s*(\"[^\"]*\"|'[^']*'|\S+)",
    re.IGNORECASE,
)


def secret_key(name: str) -> bool:
    short = name.rsplit(":", 1)[-1]
    return short in SECRET_KEYS or bool(_SECRET_KEY.search(short))


def redact_text(text: str) -> str:
    text = _PEM.sub(REDACTED, text)
    text = _KUBE_CRED.sub(lambda m: m.group(1) + REDACTED, text)
    return _ASSIGN.sub(lambda m: f"{m.group(1)}{m.group(3)}{REDACTED}", text)


def redact(value: Any, key: str = "") -> Any:
    """A copy of `value` (JSON-like data) with every secret replaced by "[secret]"."""
    if key and secret_key(key) and value not in (None, "", {}, []):
        return REDACTED
    if isinstance(value, Mapping):
        if SECRET_SIG in value:
            return REDACTED
        if value.get("secret") is True and "value" in value:
            return REDACTED
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
