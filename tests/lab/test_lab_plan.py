"""The lab's plan and credentials, without starting anything: nodes mirror each site's `nodes`, GPUs are
advertised as the device plugin would, and the lab's certificates chain to its CA with the right identities."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefm.model.problems import ConfigError
from edgefm.ops.lab import pki
from edgefm.ops.lab.nodes import GPU_PRODUCT_LABEL, GPU_RESOURCE, SITE_LABEL
from edgefm.ops.lab.runtime import Lab, LabError, load_tools, write_kubeconfig
from tests.harness import ROOT


def _checkout(tmp_path: Path) -> Path:
    for name in ("stacks", "policies"):
        shutil.copytree(ROOT / name, tmp_path / name)
    return tmp_path


def test_one_cluster_per_stack_with_the_sites_nodes() -> None:
    plans = {p.stack: p for p in Lab(ROOT).plan()}
    stacks = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in (ROOT / "stacks").glob("*.yaml"))
    # The hub's access shards live on the hub's cluster.
    assert sorted(plans) == [s for s in stacks if not s.startswith("hub-access-")]

    north = plans["site-bridge-north"]
    assert [n.name for n in north.nodes] == ["n1", "n2", "n3"]
    node = north.nodes[0].manifest()
    assert node["metadata"]["labels"][SITE_LABEL] == "bridge-north"
    assert node["metadata"]["labels"][GPU_PRODUCT_LABEL] == "NVIDIA-L40S"
    assert node["status"]["allocatable"][GPU_RESOURCE] == "1"
    assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "10.20.0.11"}

    # Time-slicing: each physical GPU is advertised `replicas` times and the product is marked shared.
    south = plans["site-bridge-south"].nodes[0].manifest()
    assert south["metadata"]["labels"][GPU_PRODUCT_LABEL].endswith("-SHARED")
    assert int(south["status"]["allocatable"][GPU_RESOURCE]) > 1

    cpu = plans["site-viaduct-cpu"].nodes[0].manifest()
    assert GPU_RESOURCE not in cpu["status"]["allocatable"]
    assert GPU_PRODUCT_LABEL not in cpu["metadata"]["labels"]


def test_a_bad_stack_file_stops_the_lab_with_its_problem(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    path = root / "stacks" / "Pulumi.site-bridge-north.yaml"
    path.write_text(path.read_text().replace("gpuModel: L40S", "gpuModel: L41"))
    with pytest.raises(ConfigError) as caught:
        Lab(root).plan()
    assert any("L41" in str(p) for p in caught.value.problems)


def test_missing_tools_name_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="make lab-tools"):
        load_tools({"EDGEFM_LAB_CACHE": str(tmp_path)})


def test_certificates_chain_to_the_lab_ca_with_rbac_identities(tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path)
    assert pki.ensure_ca(tmp_path) == ca  # reused, not regenerated
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    serving = pki.issue(ca, pki.KeyPair(tmp_path / "s.crt", tmp_path / "s.key"), common_name="x", server=True)
    admin = pki.issue(
        ca,
        pki.KeyPair(tmp_path / "a.crt", tmp_path / "a.key"),
        common_name="admin",
        organization="system:masters",
        client=True,
    )
    for pair in (serving, admin):
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        assert pair.key.stat().st_mode & 0o077 == 0
    leaf = x509.load_pem_x509_certificate(serving.cert.read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    client = x509.load_pem_x509_certificate(admin.cert.read_bytes())
    assert client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, stack="hub", server="https://127.0.0.1:1", ca=ca.cert, cert=admin.cert, key=admin.key)
    doc = yaml.safe_load(kubeconfig.read_text())
    assert kubeconfig.stat().st_mode & 0o077 == 0
    user = doc["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == admin.cert.read_bytes()
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"
