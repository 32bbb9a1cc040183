"""A site's stack opens its own registry credential and no other: the access shard's output holds every site's
credential sealed to that site's public key, and only the private key in the site's own stack opens it."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from edgefm.model.sealing import SealError, generate_keypair, open_sealed, seal
from tests.harness import HUB_OUTPUTS, STACKS, fixed_site_keys, run_program, site_from_file, unwrap

SITE_A, SITE_B = "bridge-north", "bridge-south"


def _run_site(path_site: str, outputs: dict[str, Any]) -> Any:
    from edgefm.program import build_site

    parsed, resolved = site_from_file(STACKS / f"Pulumi.site-{path_site}.yaml")

    def program() -> None:
        build_site(
            parsed,
            resolved,
            pulumi.StackReference("organization/edgefm/hub"),
            pulumi.StackReference("organization/edgefm/hub-access-000"),
        )

    return run_program(program, parsed.stack, outputs)


def test_site_a_stack_reads_its_own_credential() -> None:
    run = _run_site(SITE_A, HUB_OUTPUTS)
    secret = run.one("kubernetes:core/v1:Secret", "-model-sync-registry")
    data = unwrap(secret.inputs)["stringData"]
    assert data == {"accessKeyId": f"site-{SITE_A}", "secretAccessKey": f"registry-secret-for-{SITE_A}"}


def test_site_a_stack_cannot_open_site_b_credential() -> None:
    """Handed site B's sealed credential in its own place, site A's stack fails and learns nothing of B's key."""
    outputs = {**HUB_OUTPUTS, "sites": {**HUB_OUTPUTS["sites"], SITE_A: HUB_OUTPUTS["sites"][SITE_B]}}
    with pytest.raises(Exception, match="cannot open the sealed value: it was sealed to another site's public key"):
        _run_site(SITE_A, outputs)
    # And directly: A's private key against every other site's sealed value.
    key_a = fixed_site_keys(SITE_A).private_key
    for site, entry in HUB_OUTPUTS["sites"].items():
        if site != SITE_A:
            with pytest.raises(SealError):
                open_sealed(key_a, entry["sealed"])


def test_a_credential_sealed_for_a_to_the_wrong_name_is_refused() -> None:
    """A value that opens but names another site (a shard bug or a replayed value) is not used."""
    forged = seal(fixed_site_keys(SITE_A).public_key, {"site": SITE_B, "accessKeyId": "x", "secretAccessKey": "y"})
    outputs = {
        **HUB_OUTPUTS,
        "sites": {**HUB_OUTPUTS["sites"], SITE_A: {**HUB_OUTPUTS["sites"][SITE_A], "sealed": forged}},
    }
    with pytest.raises(Exception, match=f"the sealed credential is for site '{SITE_B}'"):
        _run_site(SITE_A, outputs)


def test_malformed_keys_get_one_clear_line() -> None:
    pair = generate_keypair()
    with pytest.raises(SealError, match="private key is not base64"):
        open_sealed("not base64!", seal(pair.public_key, {"a": "b"}))
    with pytest.raises(SealError, match=r"public key must be 32 bytes \(X25519\), got 3"):
        seal("YWJj", {"a": "b"})
