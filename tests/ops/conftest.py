"""A real PostgreSQL for the journal and queue tests: the embedded server edgefm runs on one machine, in a
private data directory on 127.0.0.1, stopped after the session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefm.ops.database import EmbeddedPostgres
from tests.engine.conftest import engine
from tools.prometheus.server import free_port

__all__ = ["engine"]  # the engine fixture, for the worker tests


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    # Not below pytest's tmp dirs: those are private to root, and the server runs as the postgres user there.
    data = Path(tempfile.mkdtemp(prefix="edgefm-pg-", dir="/tmp"))
    data.chmod(0o755)
    server = EmbeddedPostgres(data, free_port())
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
