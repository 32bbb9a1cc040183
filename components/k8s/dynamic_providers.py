"""Values generated once and kept in Pulumi state: random secrets and a site's CA.

They are Python dynamic providers: the SDK itself serves them, so no provider plugin has to be installed, and
the engine stores what they generate as secret outputs. Both replace themselves only when their own inputs
change; nothing else (a code change, a new machine) regenerates a secret.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import uuid
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

# Inputs a generated value depends on; any other property (outputs, the serialized provider) is ignored.
_RANDOM_INPUTS = ("encoding", "bytes")
_CA_INPUTS = ("common_name", "valid_days")


def _replace_on(olds: dict[str, Any], news: dict[str, Any], keys: tuple[str, ...]) -> DiffResult:
    changed = [k for k in keys if olds.get(k) != news.get(k)]
    return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)


class _RandomProvider(ResourceProvider):
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return _replace_on(olds, news, _RANDOM_INPUTS)

    def create(self, props: dict[str, Any]) -> CreateResult:
        raw = secrets.token_bytes(int(props["bytes"]))
        value = raw.hex() if props["encoding"] == "hex" else base64.b64encode(raw).decode()
        return CreateResult(id_=uuid.uuid4().hex, outs={**props, "value": value})


class RandomSecret(Resource, module="edgefm", name="RandomSecret"):
    """`bytes` random bytes, hex or base64, as the secret output `value`."""

    value: pulumi.Output[str]

    def __init__(
        self, name: str, encoding: str = "hex", num_bytes: int = 32, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["value"]))
        super().__init__(_RandomProvider(), name, {"encoding": encoding, "bytes": num_bytes, "value": None}, opts)


def make_ca(common_name: str, valid_days: int) -> tuple[str, str]:
    """A self-signed P-256 CA certificate and its PKCS#8 key, both PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert_pem, key_pem


class _CaProvider(ResourceProvider):
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return _replace_on(olds, news, _CA_INPUTS)

    def create(self, props: dict[str, Any]) -> CreateResult:
        cert, key = make_ca(str(props["common_name"]), int(props["valid_days"]))
        return CreateResult(id_=uuid.uuid4().hex, outs={**props, "certificate": cert, "private_key": key})


class CertificateAuthority(Resource, module="edgefm", name="CertificateAuthority"):
    """A self-signed CA: `certificate` (public PEM) and `private_key` (secret PEM)."""

    certificate: pulumi.Output[str]
    private_key: pulumi.Output[str]

    def __init__(
        self, name: str, common_name: str, valid_days: int = 3650, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"]))
        props = {"common_name": common_name, "valid_days": valid_days, "certificate": None, "private_key": None}
        super().__init__(_CaProvider(), name, props, opts)
