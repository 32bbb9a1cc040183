"""A portal over a copy of the sample fleet (its own git repository), the in-memory fleet service, and
helpers to sign in as the demo users; a real PostgreSQL (the embedded server) for the tests over the fleet
service."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from starlette.types import ASGIApp

from edgefm.ops.database import EmbeddedPostgres
from edgefm.portal.access import Access, load_access, load_users
from edgefm.portal.app import create_app
from edgefm.portal.contracts import SiteStatus
from edgefm.portal.fleetview import FleetView
from edgefm.portal.registry_view import ModelRow, VersionRow
from edgefm.portal.settings import PortalSettings
from tests.portal.fakes import InMemoryFleetService, OpsStrategy

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {u: f"demo-{u}" for u in ("alice", "olga", "arno", "vic")}


def make_repo(dest: Path) -> Path:
    """The sample stacks, placement policy and portal access file in a fresh git repository."""
    (dest / "policies").mkdir(parents=True)
    shutil.copytree(ROOT / "stacks", dest / "stacks")
    shutil.copy(ROOT / "policies" / "placement.yaml", dest / "policies" / "placement.yaml")
    shutil.copytree(ROOT / "portal", dest / "portal")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"]):
        subprocess.run(["git", "-C", str(dest), *args], check=True)
    subprocess.run(
        ["git", "-C", str(dest), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fleet"], check=True
    )
    return dest


@dataclass
class FakeStatus:
    """Site status as a watcher of the sites' clusters would report it."""

    values: dict[str, SiteStatus] = field(default_factory=dict)

    def statuses(self) -> Mapping[str, SiteStatus]:
        return dict(self.values)


class FakeRegistry:
    def models(self) -> list[ModelRow]:
        at = datetime(2026, 11, 1, tzinfo=UTC)
        versions = [VersionRow(v, True, at, "onnx", 88_000_000) for v in ("1.0.0", "1.1.0", "1.2.0")]
        return [ModelRow("bridge-defect-vit", versions, {"canary": "1.1.0", "stable": "1.0.0"})]


@dataclass
class PortalUnderTest:
    app: ASGIApp
    repo: Path
    service: InMemoryFleetService
    status: FakeStatus
    settings: PortalSettings


def build_portal(repo: Path, step_s: float = 0.05, failing: set[str] | None = None) -> PortalUnderTest:
    labels = {stack: e.labels for stack, e in FleetView(repo).sites().items()}
    service = InMemoryFleetService(labels, step_s=step_s, failing=failing, repo=repo)
    status = FakeStatus()
    settings = PortalSettings(
        repo=repo,
        access_file=repo / "portal" / "access.yaml",
        users_file=repo / "portal" / "users.demo.yaml",
        stream_poll_s=0.05,
    )
    access = Access(load_access(settings.access_file))
    assert settings.users_file is not None
    app = create_app(
        settings,
        service,
        status,
        FakeRegistry(),
        access,
        load_users(settings.users_file),
        strategy=OpsStrategy.model_validate,
        previews=service,
    )
    return PortalUnderTest(app, repo, service, status, settings)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "fleet")


@pytest.fixture
def portal(repo: Path) -> PortalUnderTest:
    return build_portal(repo)


def csrf_of(client: TestClient) -> str:
    token = client.cookies.get("csrftoken")
    if token is None:
        client.get("/login")
        token = client.cookies.get("csrftoken")
    assert token, "the portal set no CSRF cookie"
    return str(token)


def sign_in(client: TestClient, username: str) -> TestClient:
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORDS[username], "next": "/", "csrftoken": csrf_of(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def client_for(portal: PortalUnderTest) -> Iterator[Callable[[str], TestClient]]:
    clients: list[TestClient] = []

    def make(username: str) -> TestClient:
        client = TestClient(portal.app, base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return sign_in(client, username)

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The embedded PostgreSQL in a private data directory on 127.0.0.1, stopped after the session."""
    # Not below pytest's tmp dirs: those are private to root, and the server runs as the postgres user there.
    data = Path(tempfile.mkdtemp(prefix="edgefm-portal-pg-", dir="/tmp"))
    data.chmod(0o755)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = EmbeddedPostgres(data, port)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def new_database(postgres: str) -> str:
    """A database of its own on the session's server."""
    name = f"p{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return postgres.rsplit("/", 1)[0] + f"/{name}"
