"""Assembles the portal from settings and serves it with uvicorn (`edgefm portal`, `make portal`)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, cast

import uvicorn
from starlette.types import ASGIApp

from edgefm.model.problems import ConfigError, Problem
from edgefm.portal.access import Access, load_access, load_users
from edgefm.portal.app import create_app
from edgefm.portal.contracts import FleetServiceAPI, NoStatus, PreviewRecord, SiteStatusSource, StrategyFactory
from edgefm.portal.registry_view import BucketRegistry, NoRegistry, RegistrySource
from edgefm.portal.settings import PortalSettings
from edgefm.registry import BucketSettings, RegistryError

SERVICE_MODULE = "edgefm.ops.service"
DATABASE_MODULE = "edgefm.ops.database"


class ServiceUnavailable(RuntimeError):
    pass


class JournalPreviews:
    """Reads a site run's journaled preview (planned steps, guardrail advisories) from the service's journal."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal

    def preview_of(self, site_run_id: str) -> PreviewRecord | None:
        row = self.journal.preview(site_run_id)
        if row is None:
            return None
        return PreviewRecord(list(row.steps or []), [str(a) for a in row.advisories or []])


def strategy_factory() -> StrategyFactory:
    """The fleet service's own strategy model validates what the rollout form builds."""
    module = importlib.import_module("edgefm.ops.strategy")
    return cast(StrategyFactory, module.RolloutStrategy.model_validate)


def fleet_service(database: str | None, repo: Path, lab_dir: Path | None = None) -> FleetServiceAPI:
    """The fleet operations service (queue, workers, journal) for this checkout, on `database`, else
    $EDGEFM_DATABASE_URL, else the embedded PostgreSQL (the fleet service's own rule); its jobs run against the
    fleet lab in `lab_dir` when given."""
    try:
        module = importlib.import_module(SERVICE_MODULE)
        databases = importlib.import_module(DATABASE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in (SERVICE_MODULE, DATABASE_MODULE):
            raise
        raise ServiceUnavailable(
            f"the fleet operations service ({SERVICE_MODULE}) is not in this checkout: the portal starts no "
            "long operation itself and needs its queue and journal"
        ) from None
    return cast(FleetServiceAPI, module.FleetService(databases.database_url(database), repo, lab_dir=lab_dir))


def registry_source() -> RegistrySource:
    try:
        return BucketRegistry(BucketSettings.from_env())
    except RegistryError:
        return NoRegistry()


def build(settings: PortalSettings, service: FleetServiceAPI, status: SiteStatusSource | None = None) -> ASGIApp:
    access = Access(load_access(settings.access_file))
    users = load_users(settings.users_file) if settings.users_file else {}
    if not users and settings.oidc is None:
        raise ConfigError([Problem("portal", "users", "no way to sign in: give a users file or OpenID Connect")])
    journal = getattr(service, "journal", None)
    return create_app(
        settings,
        service,
        status or NoStatus(),
        registry_source(),
        access,
        users,
        strategy=strategy_factory(),
        previews=JournalPreviews(journal) if journal is not None else None,
    )


def serve(app: ASGIApp, host: str, port: int, **uvicorn_options: Any) -> None:
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, **uvicorn_options)
