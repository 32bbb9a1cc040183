"""No credentials in plain text: ConfigMaps, literal env, command lines, chart values."""

from __future__ import annotations

import pytest
import yaml
from edgefm_guardrails.credentials import check_plaintext_credentials, holds_credential, names_credential
from edgefm_guardrails.model import UNKNOWN, Resource

from tests.guardrails.guardrail_builders import SITE_STACK, container, deployment, helm_chart, meta, resource

PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def config_map(data: dict[str, object]) -> Resource:
    return resource(SITE_STACK, "kubernetes:core/v1:ConfigMap", "cm", {"metadata": meta("cm"), "data": data})


def one(r: Resource) -> str:
    found = check_plaintext_credentials(r)
    assert len(found) == 1, [v.message for v in found]
    assert found[0].urn == r.urn
    return found[0].message


@pytest.mark.parametrize(
    "name",
    ["password", "rootPassword", "MINIO_ROOT_PASSWORD", "apiKey", "API_KEY", "secretKey", "AWS_SECRET_ACCESS_KEY",
     "privateKey", "clientSecret", "GITHUB_TOKEN", "credentials", "db.passphrase"],
)  # fmt: skip
def test_names_that_hold_credentials(name: str) -> None:
    assert names_credential(name) and holds_credential(name, "hunter2-really")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("existingSecret", "site-storage-root"),
        ("passwordFile", "/etc/edgefm/remote-write/password"),
        ("tokenPath", "/var/run/secrets/token"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("passwordKey", "admin-password"),
        ("certSecret", "site-storage-tls"),
        ("privateKey", "tls.key"),
        ("accessKey", "site-bridge-north"),
        ("password", "${MINIO_ROOT_PASSWORD}"),
        ("EDGEFM_SITE_S3_CA_BUNDLE", "/etc/edgefm/ca/ca.crt"),
        ("region", "eu-central-1"),
    ],
)
def test_names_that_point_at_credentials_or_hold_none(name: str, value: str) -> None:
    assert not holds_credential(name, value)


def test_the_components_config_maps_pass() -> None:
    facts = config_map({"facts.json": '{"site": "bridge-north"}', "ca.crt": CERT})
    prometheus = config_map(
        {"prometheus.yml": "remote_write:\n- basic_auth:\n    password_file: /etc/edgefm/remote-write/password\n"}
    )
    assert check_plaintext_credentials(facts) == check_plaintext_credentials(prometheus) == []


def test_credentials_in_config_maps() -> None:
    assert "data.rootPassword holds a credential" in one(config_map({"rootPassword": "s3cr3t-value"}))
    assert "data.tls.key holds a private key" in one(config_map({"tls.key": PEM}))
    assert "data.app.ini holds a literal password" in one(config_map({"app.ini": "[db]\npassword = s3cr3t\n"}))
    url = "mc alias set hub https://site:pa55word@hub.example.net"
    assert "data.setup.sh holds a URL with a password" in one(config_map({"setup.sh": url}))
    assert "holds an AWS access key ID" in one(config_map({"env": "key AKIAIOSFODNN7EXAMPLE"}))
    assert check_plaintext_credentials(config_map({"rootPassword": UNKNOWN})) == []


def test_literal_env_credentials() -> None:
    bad = container(env={"MINIO_ROOT_PASSWORD": "minio123"})
    message = one(deployment("x", [bad]))
    assert "container 'app' env MINIO_ROOT_PASSWORD is a literal credential; use valueFrom.secretKeyRef" in message
    # The same variable from a Secret is how the components do it.
    assert check_plaintext_credentials(deployment("x", [container(secret_env=["MINIO_ROOT_PASSWORD"])])) == []
    innocent_name = container(env={"MC_HOST_site": "https://root:minio123@minio:9000"})
    assert "env MC_HOST_site holds a URL with a password" in one(deployment("x", [innocent_name]))


def test_credentials_on_the_command_line() -> None:
    c = container(command=["/bin/sh", "-c", "mc alias set s https://minio:9000 root minio123 --api s3v4"])
    assert check_plaintext_credentials(deployment("x", [c])) == []  # positional secrets cannot be told apart
    c = container(args=["--endpoint", "https://root:minio123@minio:9000"])
    assert "args[1] holds a URL with a password" in one(deployment("x", [c]))


def test_credentials_in_chart_values() -> None:
    values = {
        "rootUser": "admin",
        "rootPassword": "minio123",
        "users": [{"accessKey": "site-a", "secretKey": "k" * 40}],
    }
    message = one(helm_chart("registry", yaml.safe_dump(values)))
    assert "spec.valuesContent rootPassword holds a credential" in message
    assert "spec.valuesContent users[0].secretKey holds a credential" in message
    by_reference = {
        "existingSecret": "registry-root",
        "users": [{"accessKey": "site-a", "existingSecret": "site-a", "existingSecretKey": "secretKey"}],
        "tls": {"certSecret": "registry-tls", "privateKey": "tls.key"},
        "admin": {"existingSecret": "grafana-admin", "passwordKey": "admin-password"},
    }
    assert check_plaintext_credentials(helm_chart("registry", yaml.safe_dump(by_reference))) == []
