"""No credentials in plain text: not in ConfigMaps, not as literal container environment values, not in chart
values (a HelmChart's values are an ordinary object anyone who can read the chart can read). Credentials live
in Secrets and reach containers through `secretKeyRef` or mounted Secret volumes (CIS Kubernetes Benchmark
5.4.1; OWASP Kubernetes Top 10 K08, Secrets Management).

Judged by name (a key or variable that names a credential and holds a literal) and by value (a private key, a
cloud access key, a URL with a password), so a credential under an innocent name is found too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from edgefm_guardrails.kube import env_values, helm_values, is_kind, workload_containers
from edgefm_guardrails.model import UNKNOWN, Resource, Violation, as_list, as_mapping, get

# Names that hold a credential (split into words at case changes, `_`, `-` and `.`).
_CREDENTIAL_WORDS: Final = (
    ("password",),
    ("passwd",),
    ("passphrase",),
    ("secret",),
    ("token",),
    ("api", "key"),
    ("apikey",),
    ("secret", "key"),
    ("private", "key"),
    ("credentials",),
    ("credential",),
    ("client", "secret"),
    ("auth", "token"),
)
# Words after which the name points at a credential instead of holding one (`existingSecret`, `passwordFile`,
# `tokenPath`, `secretName`, `privateKeyField`) or holds something public (`accessKeyId` is an identifier).
_REFERENCE_WORDS: Final = frozenset({"name", "ref", "file", "path", "field", "id", "dir", "mount", "env", "prefix"})
_REFERENCE_LEADS: Final = frozenset({"existing", "use", "create", "enable", "enabled"})
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b|_|$)|[A-Z]?[a-z]+|\d+")
# Values that are credentials whatever they are called.
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_AWS_ACCESS_KEY = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_URL_PASSWORD = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:(?P<pw>[^@\s/]+)@")
# Config text embedding a literal credential (`password: x`, `"token": "x"`, `secret_key = x`).
_EMBEDDED = re.compile(
    r"""(?im)^\s*["']?(?P<key>[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api_?key|access_?key|private_?key)"""
    r"""[A-Za-z0-9_.-]*)["']?\s*[:=]\s*["']?(?P<value>[^\s"',}#]+)"""
)
# Literals that are placeholders or references, not credentials.
_PLACEHOLDER = re.compile(r"^(\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{\{.*\}\}|<[^>]*>|\*+|none|null|true|false|)$", re.I)


# `<x>Secret` names a Secret object in chart values (`certSecret`, `existingSecret`) unless it is one of these.
_SECRET_PHRASES: Final = frozenset({"client", "shared", "jwt", "webhook", "cookie", "session", "signing", "app"})
# `<credential>Key` names the key inside a Secret that holds the credential (`passwordKey`, `tokenKey`).
_KEY_OF: Final = frozenset({"password", "passwd", "passphrase", "token", "credentials", "credential"})
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_FILE_NAME = re.compile(r"^[\w.-]+\.(key|pem|crt|cert|p12|pfx|der)$")


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name.replace("-", "_").replace(".", "_"))]


def names_credential(name: str) -> bool:
    """Whether a key or variable name says it holds a credential (not a reference to one)."""
    words = _words(name)
    if not words or words[-1] in _REFERENCE_WORDS or words[0] in _REFERENCE_LEADS:
        return False
    for phrase in _CREDENTIAL_WORDS:
        n = len(phrase)
        if any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1)):
            return True
    return False


def value_problems(value: str) -> list[str]:
    """Credentials a value carries whatever its name."""
    problems: list[str] = []
    if _PRIVATE_KEY.search(value):
        problems.append("a private key")
    if _AWS_ACCESS_KEY.search(value):
        problems.append("an AWS access key ID")
    m = _URL_PASSWORD.search(value)
    if m and not _PLACEHOLDER.match(m.group("pw")):
        problems.append("a URL with a password")
    for m in _EMBEDDED.finditer(value):
        key = m.group("key")
        if names_credential(key) and not _PLACEHOLDER.match(m.group("value")):
            problems.append(f"a literal {key}")
    return problems


def _is_literal(value: Any) -> bool:
    return isinstance(value, str) and not _PLACEHOLDER.match(value.strip()) and not _FILE_NAME.match(value.strip())


def holds_credential(name: str, value: Any) -> bool:
    """A literal under a credential's name, less the names that point at a Secret rather than hold one."""
    if not names_credential(name) or not _is_literal(value):
        return False
    words = _words(name)
    if len(words) >= 2 and words[-1] == "key" and words[-2] in _KEY_OF:
        return False
    if len(words) >= 2 and words[-1] == "secret" and words[-2] not in _SECRET_PHRASES:
        return not _OBJECT_NAME.match(str(value))
    return True


def _config_map(r: Resource) -> Iterator[str]:
    for field in ("data", "binaryData"):
        data = get(r.props, field)
        if data is UNKNOWN:
            continue
        for key, value in as_mapping(data).items():
            if value is UNKNOWN:
                continue
            if holds_credential(str(key), value):
                yield f"{field}.{key} holds a credential"
            elif isinstance(value, str):
                for p in value_problems(value):
                    yield f"{field}.{key} holds {p}"


def _values(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, child in node.items():
            child_path = f"{path}.{key}" if path else str(key)
            if isinstance(child, str) and holds_credential(str(key), child):
                yield f"{child_path} holds a credential"
            else:
                yield from _values(child, child_path)
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _values(child, f"{path}[{i}]")
    elif isinstance(node, str):
        for p in value_problems(node):
            yield f"{path} holds {p}"


def check_plaintext_credentials(r: Resource) -> list[Violation]:
    problems: list[str] = []
    if is_kind(r, "core", "ConfigMap"):
        problems += _config_map(r)
    for _tmpl, c in workload_containers(r):
        for var, value in env_values(c).items():
            if value is UNKNOWN or not isinstance(value, str):
                continue
            if holds_credential(var, value):
                problems.append(f"{c.label} env {var} is a literal credential; use valueFrom.secretKeyRef")
            else:
                problems += [
                    f"{c.label} env {var} holds {p}; use valueFrom.secretKeyRef" for p in value_problems(value)
                ]
        for key in ("command", "args"):
            for i, item in enumerate(as_list(c.spec.get(key))):
                if isinstance(item, str):
                    problems += [f"{c.label} {key}[{i}] holds {p}" for p in value_problems(item)]
    for where, values in helm_values(r):
        problems += [f"{where} {p}; reference a Secret instead" for p in _values(values, "")]
    if not problems:
        return []
    return [Violation(f"{r.label} keeps credentials in plain text: {'; '.join(problems)}", r.urn)]
