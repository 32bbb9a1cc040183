"""OpenID Connect sign-in against a real provider on 127.0.0.1 (oidc-provider-mock, built on authlib).

The portal's authlib client discovers the provider, redirects to its authorization endpoint, exchanges the
code for tokens over HTTP, checks the ID token's signature against the provider's keys, and maps the
`groups` claim onto roles.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import oidc_provider_mock
import pytest
import werkzeug.serving
from fastapi.testclient import TestClient

from edgefm.portal.access import Access, load_access
from edgefm.portal.app import create_app
from edgefm.portal.contracts import NoStatus
from edgefm.portal.settings import OidcSettings, PortalSettings
from tests.portal.conftest import FakeRegistry, make_repo
from tests.portal.fakes import InMemoryFleetService, OpsStrategy

USERS = [
    oidc_provider_mock.User(
        sub="u-1001", claims={"preferred_username": "oona", "name": "Oona Operator", "groups": ["edgefm-operators"]}
    ),
    oidc_provider_mock.User(sub="u-1002", claims={"preferred_username": "nobody", "groups": ["marketing"]}),
]


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    app = oidc_provider_mock.app(user_claims=USERS)
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def client(provider: str, tmp_path: Path) -> Iterator[tuple[TestClient, InMemoryFleetService]]:
    repo = make_repo(tmp_path / "fleet")
    oidc = OidcSettings(issuer=provider, client_id="edgefm-portal", client_secret="test-only-client-secret")
    settings = PortalSettings(repo=repo, access_file=repo / "portal" / "access.yaml", oidc=oidc)
    service = InMemoryFleetService()
    access = Access(load_access(settings.access_file))
    app = create_app(
        settings, service, NoStatus(), FakeRegistry(), access, users={}, strategy=OpsStrategy.model_validate
    )
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c, service


def sign_in_via_provider(client: TestClient, sub: str) -> httpx.Response:
    start = client.get("/login/oidc", follow_redirects=False)
    assert start.status_code == 302
    authorize = start.headers["location"]
    assert urlsplit(authorize).path == "/oauth2/authorize"
    query = parse_qs(urlsplit(authorize).query)
    assert query["response_type"] == ["code"] and "openid" in query["scope"][0]
    # The user picks an identity on the provider's page; the provider redirects back with a code.
    granted = httpx.post(authorize, data={"sub": sub}, follow_redirects=False)
    assert granted.status_code == 302, granted.text
    back = urlsplit(granted.headers["location"])
    assert back.path == "/auth/callback" and "code" in parse_qs(back.query)
    done: httpx.Response = client.get(f"{back.path}?{back.query}", follow_redirects=False)
    return done


def test_sign_in_maps_groups_to_roles(client: tuple[TestClient, InMemoryFleetService]) -> None:
    c, service = client
    page = c.get("/login")
    assert 'href="/login/oidc"' in page.text and "Password" not in page.text  # no local users configured
    done = sign_in_via_provider(c, "u-1001")
    assert done.status_code == 303 and done.headers["location"] == "/"
    home = c.get("/").text
    assert "Oona Operator (oidc)" in home
    assert 'href="/onboard"' in home  # operator on every site group
    assert home.count('<tr data-stack="') == 4
    assert [(a.actor, a.action, a.target, a.result) for a in service.audit_log(5)] == [("oona", "login", "oidc", "ok")]


def test_groups_without_a_binding_see_nothing(client: tuple[TestClient, InMemoryFleetService]) -> None:
    c, _ = client
    assert sign_in_via_provider(c, "u-1002").status_code == 303
    home = c.get("/").text
    assert home.count('<tr data-stack="') == 0 and 'href="/onboard"' not in home
    assert c.get("/sites/site-bridge-north").status_code == 403


def test_a_forged_callback_is_refused(client: tuple[TestClient, InMemoryFleetService]) -> None:
    c, service = client
    c.get("/login/oidc", follow_redirects=False)
    response = c.get("/auth/callback?code=forged&state=not-the-one-issued")
    assert response.status_code == 401 and "sign-in failed" in response.text
    assert c.get("/", follow_redirects=False).status_code == 303
    assert service.audit_log(1)[0].result.startswith("denied")
