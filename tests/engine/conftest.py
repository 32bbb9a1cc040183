"""Engine tests run the real Pulumi engine; the session fixture bootstraps it (fast when warm)."""

from __future__ import annotations

import pytest
from rich.console import Console

from edgefm.toolchain import Manifest, ToolchainError, ensure_toolchain


@pytest.fixture(scope="session")
def engine() -> Manifest:
    """The toolchain manifest; a missing toolchain is built, and a failed build fails the tests (no skip)."""
    try:
        return ensure_toolchain(console=Console(stderr=True, highlight=False))
    except ToolchainError as exc:
        pytest.fail(f"make tools failed at step {exc.step}: {exc.message}\n{exc.tail}", pytrace=False)
