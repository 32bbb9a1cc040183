"""Engine tests run the real Pulumi engine; the session fixture bootstraps it (fast when warm)."""

from __future__ import annotations

import pytest
from rich.console import Console

from edgefm.ops.engine import Manifest
from tools.engine.build import ensure_toolchain
from tools.gobuild import BuildError


@pytest.fixture(scope="session")
def engine() -> Manifest:
    """The toolchain manifest; a missing toolchain is built, and a failed build fails the tests (no skip)."""
    try:
        return ensure_toolchain(console=Console(stderr=True, highlight=False))
    except BuildError as exc:
        pytest.fail(f"make tools failed at step {exc.step}: {exc.message}\n{exc.tail}", pytrace=False)
