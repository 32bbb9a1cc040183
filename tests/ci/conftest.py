from __future__ import annotations

from pathlib import Path

import pytest

from tests.ci.actionlint import BootstrapError, ensure_actionlint


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """The pinned actionlint; a missing toolchain fails the test run rather than skipping the check."""
    try:
        return ensure_actionlint()
    except BootstrapError as exc:
        pytest.fail(f"cannot bootstrap actionlint: {exc}", pytrace=False)
