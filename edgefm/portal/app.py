"""The portal: the fleet in a browser (FastAPI, server-rendered Jinja2 pages, htmx, live events over SSE).

Request handlers only read (the checkout, the journal, cached site status) and enqueue: previews and
rollouts are jobs of the fleet service, which answers at once with a run id; their events stream to the
browser from the journal by sequence number, so a reconnecting browser resumes where it was.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import yaml
from asgi_csrf import asgi_csrf, error_messages
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp

from edgefm.model.config import GPU_MODELS
from edgefm.model.placement import flatten
from edgefm.model.problems import ConfigError, from_validation_error
from edgefm.model.stacks import site_stack
from edgefm.portal import changes as change_mod
from edgefm.portal import onboarding
from edgefm.portal.access import RANK, Access, LocalUser, Principal, Role, verify_password
from edgefm.portal.contracts import (
    REFUSALS,
    STRATEGY_FIELDS,
    TERMINAL_KINDS,
    TERMINAL_STATES,
    EventView,
    FleetServiceAPI,
    PreviewRecord,
    PreviewSource,
    RolloutView,
    SiteRunView,
    SiteStatus,
    SiteStatusSource,
    SiteSummaryView,
    StrategyFactory,
    StrategyForm,
    drift_line,
)
from edgefm.portal.fleetview import FleetView, SiteEntry
from edgefm.portal.redact import redact, redact_text
from edgefm.portal.registry_view import RegistrySource
from edgefm.portal.selector import SelectorError, parse_selector
from edgefm.portal.settings import PortalSettings
from edgefm.registry import RegistryError

# authlib's deprecation module installs an "always" filter for its own notices when first imported: load it
# first, so that the filter below takes precedence.
importlib.import_module("authlib.deprecate")

with warnings.catch_warnings():
    # authlib announces a move of its httpx integration; the Starlette client API used here is unchanged.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.starlette_client import OAuth, OAuthError

HERE = Path(__file__).parent
VENDOR = HERE / "static" / "vendor"
VENDOR_FILES = ("htmx.min.js", "sse.min.js")


class MissingAssets(RuntimeError):
    pass


@dataclass
class Portal:
    settings: PortalSettings
    service: FleetServiceAPI
    status: SiteStatusSource
    registry: RegistrySource
    access: Access
    users: dict[str, LocalUser]
    strategy: StrategyFactory
    previews: PreviewSource | None
    fleet: FleetView = field(init=False)

    def __post_init__(self) -> None:
        self.fleet = FleetView(self.settings.repo)


class Denied(Exception):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class LoginRequired(Exception):
    pass


@dataclass(frozen=True)
class InventoryRow:
    entry: SiteEntry
    status: SiteStatus
    last_run: SiteRunView | None
    findings: Sequence[str]
    # Drifted resources ("Kind/name: properties"); `drift_checked`: a drift check (or the watcher) has looked.
    drift: Sequence[str]
    drift_checked: bool

    @property
    def last_run_at(self) -> datetime | None:
        return None if self.last_run is None else self.last_run.started_at or self.last_run.finished_at


def site_drift(summary: SiteSummaryView | None, status: SiteStatus) -> tuple[tuple[str, ...], bool]:
    """A site's drift and whether anything looked for it: its newest journaled drift check's, else the drift
    its cluster watcher reports (a watcher that saw none says nothing: it may not look for drift at all)."""
    if summary is not None and summary.drift_checked_at is not None:
        return tuple(drift_line(entry) for entry in summary.drift), True
    return status.drift, bool(status.drift)


def _fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    return value.isoformat(sep=" ", timespec="seconds")[:19]


_ZERO = timedelta(0)


_EPOCH = datetime.min.replace(tzinfo=UTC)


def _when_of(run: SiteRunView) -> datetime:
    return run.started_at or run.finished_at or _EPOCH


def create_app(
    settings: PortalSettings,
    service: FleetServiceAPI,
    status: SiteStatusSource,
    registry: RegistrySource,
    access: Access,
    users: Mapping[str, LocalUser] | None = None,
    *,
    strategy: StrategyFactory,
    previews: PreviewSource | None = None,
) -> ASGIApp:
    """The portal as an ASGI app: FastAPI wrapped in CSRF protection (every non-GET needs the token)."""
    missing = [f for f in VENDOR_FILES if not (VENDOR / f).is_file()]
    if missing:
        raise MissingAssets(f"portal browser libraries missing ({', '.join(missing)}): run `make portal-assets`")
    portal = Portal(settings, service, status, registry, access, dict(users or {}), strategy, previews)
    # Read and resolve every stack file now, off the request path: the first page then finds a warm cache.
    threading.Thread(target=portal.fleet.sites, name="portal-warm-fleet", daemon=True).start()
    app = FastAPI(title="edgefm portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = portal
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = _fmt_time
    templates.env.filters["redact"] = redact
    templates.env.filters["redact_text"] = redact_text
    templates.env.globals["RANK"] = RANK
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    oauth: OAuth | None = None
    if settings.oidc is not None:
        oauth = OAuth()
        oauth.register(
            name="idp",
            server_metadata_url=settings.oidc.issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_id=settings.oidc.client_id,
            client_secret=settings.oidc.client_secret.get_secret_value(),
            client_kwargs={"scope": settings.oidc.scope},
        )

    @app.middleware("http")
    async def server_timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started, cpu = time.perf_counter(), time.thread_time()
        response = await call_next(request)
        # Time to the response head: the whole page for HTML, the first byte for a stream. `cpu` is this
        # thread's CPU time, which a busy shared machine does not inflate (handlers here are async, on this thread).
        wall_ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000
        timing = f"app;dur={wall_ms:.1f}, cpu;dur={cpu_ms:.1f}"
        # The journal read, on a worker thread (wall time; its CPU is not in `cpu`), where a page makes one.
        journal = getattr(request.state, "journal_ms", None)
        if journal is not None:
            timing += f", journal;dur={journal:.1f}"
        response.headers["Server-Timing"] = timing
        return response

    # ---- helpers ---------------------------------------------------------------------------------------

    def principal(request: Request) -> Principal:
        data = request.session.get("user")
        if not isinstance(data, dict):
            raise LoginRequired
        return Principal(data["username"], tuple(data["groups"]), data["via"], data.get("display_name", ""))

    def csrf(request: Request) -> str:
        return cast(str, request.scope["csrftoken"]())

    def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        who: Principal | None
        try:
            who = principal(request)
        except LoginRequired:
            who = None
        base = {
            "user": who,
            "csrf_token": csrf(request),
            "highest": portal.access.highest(who) if who else 0,
            "is_admin": portal.access.is_admin(who) if who else False,
            "oidc": settings.oidc,
        }
        return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)

    def audit(who: Principal | str, action: str, target: str, result: str) -> None:
        actor = who.username if isinstance(who, Principal) else who
        portal.service.audit(actor, action, redact_text(target), redact_text(result))

    def require(who: Principal, role: Role, stacks: Sequence[str], action: str, target: str) -> None:
        sites = portal.fleet.sites()
        labels = [sites[s].labels if s in sites else {} for s in stacks]
        if not stacks or not portal.access.can_all(who, role, labels):
            denied = [s for s, lab in zip(stacks, labels, strict=True) if not portal.access.can(who, role, lab)]
            message = f"{who.username} is not {role} on {', '.join(denied) or 'these sites'}"
            audit(who, action, target, f"denied: {message}")
            raise Denied(message)

    def visible(who: Principal) -> dict[str, SiteEntry]:
        return {s: e for s, e in portal.fleet.sites().items() if portal.access.can(who, "viewer", e.labels)}

    def rollout_stacks(r: RolloutView) -> list[str]:
        return list(r.stacks)

    async def thread(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(Denied)
    async def _denied(request: Request, exc: Denied) -> Response:
        return render(request, "denied.html", {"message": exc.message}, status_code=403)

    # ---- sign in / out ---------------------------------------------------------------------------------

    def sign_in(request: Request, who: Principal) -> None:
        request.session.clear()
        request.session["user"] = {
            "username": who.username,
            "groups": list(who.groups),
            "via": who.via,
            "display_name": who.display_name,
        }
        audit(who, "login", who.via, "ok")

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", {"next": next, "error": None, "local": bool(portal.users)})

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        target = str(form.get("next", "/"))
        user = portal.users.get(username)
        ok = await thread(verify_password, user, password)
        if not ok or user is None:
            audit(username or "-", "login", "local", "denied: wrong username or password")
            ctx = {"next": target, "error": "wrong username or password", "local": bool(portal.users)}
            return render(request, "login.html", ctx, status_code=401)
        sign_in(request, Principal(user.username, tuple(user.groups), "local", user.display_name))
        return RedirectResponse(_local_path(target), 303)

    @app.get("/login/oidc")
    async def login_oidc(request: Request) -> Response:
        if oauth is None:
            return RedirectResponse("/login", status_code=303)
        client = oauth.create_client("idp")
        return cast(Response, await client.authorize_redirect(request, str(request.url_for("auth_callback"))))

    @app.get("/auth/callback", name="auth_callback")
    async def auth_callback(request: Request) -> Response:
        if oauth is None:
            return RedirectResponse("/login", status_code=303)
        client = oauth.create_client("idp")
        try:
            token = await client.authorize_access_token(request)
        except OAuthError as exc:
            audit("-", "login", "oidc", f"denied: {exc.error}")
            ctx = {"next": "/", "error": f"sign-in failed: {exc.error}", "local": bool(portal.users)}
            return render(request, "login.html", ctx, status_code=401)
        claims = dict(token.get("userinfo") or {})
        groups = claims.get(portal.access.policy.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        username = str(claims.get("preferred_username") or claims.get("email") or claims["sub"])
        sign_in(request, Principal(username, tuple(str(g) for g in groups), "oidc", str(claims.get("name", ""))))
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        with contextlib.suppress(LoginRequired):
            audit(principal(request), "logout", "-", "ok")
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ---- fleet inventory -------------------------------------------------------------------------------

    def preview_of(run: SiteRunView | None) -> PreviewRecord | None:
        if run is None or portal.previews is None:
            return None
        return portal.previews.preview_of(run.id)

    def inventory(
        who: Principal, selector_text: str, summaries: Mapping[str, SiteSummaryView]
    ) -> tuple[list[InventoryRow], str | None]:
        error = None
        try:
            selector = parse_selector(selector_text)
        except (SelectorError, ValidationError) as exc:
            selector, error = parse_selector(""), str(exc)
        statuses = portal.status.statuses()
        rows = []
        for stack, entry in visible(who).items():
            if not selector.matches(entry.labels):
                continue
            summary = summaries.get(stack)
            status = statuses.get(stack, SiteStatus())
            drift, checked = site_drift(summary, status)
            last = summary.last_run if summary is not None else None
            findings = list(summary.advisories) if summary is not None else []
            rows.append(InventoryRow(entry, status, last, findings, drift, checked))
        return rows, error

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request, selector: str = "") -> HTMLResponse:
        who = principal(request)
        # The whole fleet's runs, previews and drift checks in one read of the journal, not one per site.
        started = time.perf_counter()
        summaries = await thread(portal.service.site_summaries)
        request.state.journal_ms = (time.perf_counter() - started) * 1000
        rows, error = inventory(who, selector, summaries)
        ctx: dict[str, Any] = {"rows": rows, "selector": selector, "selector_error": error}
        ctx["policy_problem"] = portal.fleet.policy_problem()
        ctx["can_operate"] = bool(rows) and portal.access.can_all(who, "operator", [r.entry.labels for r in rows])
        return render(request, "inventory.html", ctx, status_code=400 if error else 200)

    @app.post("/drift")
    async def fleet_drift(request: Request) -> Response:
        """A drift check (a job) of every site the selector shows; the run page follows it."""
        who = principal(request)
        form = await request.form()
        rows, error = inventory(who, str(form.get("selector", "")), {})
        if error is not None:
            raise Denied(error)
        stacks = [r.entry.stack for r in rows]
        require(who, "operator", stacks, "drift.start", ", ".join(stacks) or "-")
        try:
            run_id = await thread(portal.service.start_drift, stacks, who.username)
        except REFUSALS as exc:
            raise Denied(str(exc)) from None
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    # ---- site page -------------------------------------------------------------------------------------

    @app.get("/sites/{stack}", response_class=HTMLResponse)
    async def site_page(request: Request, stack: str) -> HTMLResponse:
        who = principal(request)
        entry = portal.fleet.site(stack)
        if entry is None:
            return render(request, "denied.html", {"message": f"no site stack {stack}"}, status_code=404)
        if not portal.access.can(who, "viewer", entry.labels):
            raise Denied(f"{who.username} is not viewer on {stack}")
        explained = portal.fleet.explain(stack)
        settings_rows: list[tuple[str, Any, str]] = []
        if explained is not None and entry.resolved is not None:
            values = flatten(explained["profile"])
            settings_rows = [(k, v, entry.resolved.source_of(k)) for k, v in sorted(values.items())]
        runs = sorted(await thread(portal.service.site_runs, stack), key=_when_of, reverse=True)
        summary = (await thread(portal.service.site_summaries, [stack])).get(stack)
        last_preview = summary.last_preview if summary is not None else None
        preview = preview_of(last_preview)
        recorded = await thread(portal.service.outputs, stack)
        status = portal.status.statuses().get(stack, SiteStatus())
        drift, drift_checked = site_drift(summary, status)
        ctx = {
            "entry": entry,
            "explained": explained,
            "settings_rows": settings_rows,
            "runs": runs,
            "outputs": redact(dict(recorded)) if recorded is not None else None,
            "last_preview": last_preview,
            "preview_steps": redact(list(preview.steps)) if preview else [],
            "advisories": list(preview.advisories) if preview else [],
            "status": status,
            "drift": drift,
            "drift_checked": drift_checked,
            "drift_checked_at": summary.drift_checked_at if summary is not None else None,
            "can_operate": portal.access.can(who, "operator", entry.labels),
        }
        return render(request, "site.html", ctx)

    async def start_site_job(request: Request, stack: str, action: str, start: Callable[..., str]) -> Response:
        """A drift check or preview of one site, queued; the page goes to the run at once."""
        who = principal(request)
        if portal.fleet.site(stack) is None:
            return render(request, "denied.html", {"message": f"no site stack {stack}"}, status_code=404)
        require(who, "operator", [stack], action, stack)
        try:
            run_id = await thread(start, [stack], who.username)
        except REFUSALS as exc:
            raise Denied(str(exc)) from None
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    @app.post("/sites/{stack}/drift")
    async def site_drift_check(request: Request, stack: str) -> Response:
        return await start_site_job(request, stack, "drift.start", portal.service.start_drift)

    @app.post("/sites/{stack}/preview")
    async def site_preview(request: Request, stack: str) -> Response:
        return await start_site_job(request, stack, "preview.start", portal.service.start_preview)

    # ---- onboarding ------------------------------------------------------------------------------------

    def onboard_ctx(form: Mapping[str, str], errors: Mapping[str, list[str]]) -> dict[str, Any]:
        policy = portal.fleet.policy()
        return {
            "form": form,
            "errors": errors,
            "labels": policy.labels if policy else {},
            "rows": max(
                onboarding.NODE_ROWS,
                1 + max((i for i in range(onboarding.MAX_NODE_ROWS) if form.get(f"node_name_{i}")), default=-1),
            ),
            "gpu_models": sorted(GPU_MODELS),
        }

    @app.get("/onboard", response_class=HTMLResponse)
    async def onboard_page(request: Request) -> HTMLResponse:
        who = principal(request)
        if portal.access.highest(who) < RANK["operator"]:
            raise Denied(f"{who.username} is not operator on any site group")
        return render(request, "onboard.html", onboard_ctx({}, {}))

    @app.post("/onboard", response_class=HTMLResponse)
    async def onboard_submit(request: Request) -> Response:
        who = principal(request)
        form = {k: str(v) for k, v in (await request.form()).items() if k != "csrftoken"}
        policy = portal.fleet.policy()
        if policy is None:
            ctx = onboard_ctx(form, {"_form": [portal.fleet.policy_problem() or "placement policy unavailable"]})
            return render(request, "onboard.html", ctx, status_code=422)
        spec, checked = onboarding.validate_site(form, policy, portal.fleet.stacks_dir)
        if spec is None:
            return render(request, "onboard.html", onboard_ctx(form, checked.errors), status_code=422)
        stack = site_stack(spec.name)
        if not portal.access.can(who, "operator", spec.labels):
            audit(who, "onboard", stack, "denied: not operator on a site group with these labels")
            raise Denied(f"{who.username} is not operator on a site group matching these labels")
        result = await thread(onboarding.onboard, form, policy, portal.settings.repo, who.username)
        if result.errors or result.stack is None:
            return render(request, "onboard.html", onboard_ctx(form, result.errors), status_code=422)
        run_id = await thread(portal.service.start_preview, [result.stack], who.username)
        audit(who, "onboard", result.stack, f"committed {result.commit} on {result.branch}; preview {run_id}")
        return RedirectResponse(f"/runs/{run_id}?onboarded={result.stack}&branch={result.branch}", 303)

    # ---- change preview --------------------------------------------------------------------------------

    def change_ctx(form: Mapping[str, str], errors: Mapping[str, list[str]], plan: Any = None) -> dict[str, Any]:
        policy = portal.fleet.policy()
        keys = sorted(flatten(policy.defaults)) if policy else []
        layers = ["defaults", *(p.name for p in policy.profiles)] if policy else []
        return {"form": form, "errors": errors, "plan": plan, "keys": keys, "layers": layers}

    @app.get("/changes", response_class=HTMLResponse)
    async def change_page(request: Request) -> HTMLResponse:
        principal(request)
        return render(request, "changes.html", change_ctx({"layer": "defaults", "key": "model.version"}, {}))

    @app.post("/changes", response_class=HTMLResponse)
    async def change_start(request: Request) -> Response:
        """Checks the edit, then queues its preview on the engine (a job) and answers with the run at once."""
        who = principal(request)
        form = {k: str(v) for k, v in (await request.form()).items() if k != "csrftoken"}
        layer, key, text = form.get("layer", ""), form.get("key", "").strip(), form.get("value", "")
        errors: dict[str, list[str]] = {}
        policy = portal.fleet.policy()
        if policy is None:
            errors["_form"] = [portal.fleet.policy_problem() or "placement policy unavailable"]
            return render(request, "changes.html", change_ctx(form, errors), status_code=422)
        if key not in set(flatten(policy.defaults)) | {"model.channel"}:
            errors["key"] = [f"{key!r} is not a profile key"]
        try:
            value = change_mod.parse_value(text)
        except ValueError as exc:
            errors["value"] = [str(exc)]
        if errors:
            return render(request, "changes.html", change_ctx(form, errors), status_code=422)
        raw = yaml.safe_load(portal.fleet.placement_path.read_text())
        edited_text = ""
        try:
            change_mod.edited_policy(raw, layer, key, value)
            edited_text = change_mod.edited_text(raw, layer, key, value)
        except ValueError as exc:
            errors["layer"] = [str(exc)]
        except ConfigError as exc:
            errors["value"] = [f"{p.path}: {p.message}" for p in exc.problems]
        if errors:
            return render(request, "changes.html", change_ctx(form, errors), status_code=422)
        # An edit of the placement policy may reach any site: previewing it is an operator's action on all.
        require(who, "operator", sorted(portal.fleet.sites()), "change.preview", f"{layer}: {key}={text}")
        change = f"{layer}: {key} = {text.strip()}"
        try:
            run_id = await thread(portal.service.start_change_preview, edited_text, change, who.username)
        except REFUSALS as exc:
            raise Denied(str(exc)) from None
        return RedirectResponse(f"/changes/{run_id}", status_code=303)

    def change_view(who: Principal, run_id: str) -> dict[str, Any]:
        view = portal.service.change_preview(run_id)
        if view is None:
            raise Denied(f"no change preview {run_id}")
        sites = portal.fleet.sites()
        # Sites this person may not view are counted, not shown; hub-side stacks carry no site's data.
        shown = [
            c for c in view.sites if c.stack not in sites or portal.access.can(who, "viewer", sites[c.stack].labels)
        ]
        # Each affected site's profile diff: the site resolved under the policy now and as edited.
        current, edited = portal.fleet.policy(), None
        with contextlib.suppress(ConfigError, yaml.YAMLError):
            edited = change_mod.parse_policy_text(view.placement)
        diffs: dict[str, Any] = {}
        if current is not None and edited is not None:
            entries = {c.stack: sites[c.stack] for c in shown if c.stack in sites}
            plan = change_mod.plan_change(entries, current, edited, "", "", None)
            diffs = {c.stack: c for c in plan.affected}
        done = sum(1 for c in view.sites if c.run.state in TERMINAL_STATES)
        return {
            "view": view,
            "sites": shown,
            "hidden": len(view.sites) - len(shown),
            "diffs": diffs,
            "done": view.state in TERMINAL_STATES,
            "previewed": done,
            "state_badge": Markup(_state_badge(view.state)),
        }

    @app.get("/changes/{run_id}", response_class=HTMLResponse)
    async def change_page_of(request: Request, run_id: str) -> HTMLResponse:
        who = principal(request)
        ctx = await thread(change_view, who, run_id)
        return render(request, "change.html", ctx)

    @app.get("/changes/{run_id}/sites", response_class=HTMLResponse)
    async def change_sites(request: Request, run_id: str) -> HTMLResponse:
        """The polled part of a change preview; 286 tells htmx to stop polling once the run has ended."""
        who = principal(request)
        ctx = await thread(change_view, who, run_id)
        response = render(request, "_change_sites.html", ctx)
        if ctx["done"]:
            response.status_code = 286
        return response

    # ---- runs and rollouts -----------------------------------------------------------------------------

    def event_view(e: EventView) -> dict[str, Any]:
        return {
            "seq": e.seq,
            "at": _fmt_time(e.at),
            "kind": e.kind,
            "stack": e.stack or "",
            "message": redact_text(e.message),
            "data": redact(dict(e.data)),
        }

    def visible_events(who: Principal, events: Sequence[EventView]) -> list[dict[str, Any]]:
        sites = portal.fleet.sites()
        out = []
        for e in events:
            if e.stack and e.stack in sites and not portal.access.can(who, "viewer", sites[e.stack].labels):
                continue
            out.append(event_view(e))
        return out

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(request: Request, run_id: str, onboarded: str = "", branch: str = "") -> HTMLResponse:
        who = principal(request)
        events = visible_events(who, await thread(portal.service.events, run_id, 0))
        last = events[-1]["seq"] if events else 0
        done = any(e["kind"] in TERMINAL_KINDS for e in events)
        ctx = {"run_id": run_id, "events": events, "last_seq": last, "done": done}
        ctx |= {"onboarded": onboarded, "branch": branch}
        return render(request, "run.html", ctx)

    def rollout_or_404(rollout_id: str) -> RolloutView:
        r = portal.service.rollout(rollout_id)
        if r is None:
            raise Denied(f"no rollout {rollout_id}")
        return r

    @app.get("/runs/{run_id}/stream")
    async def run_stream(request: Request, run_id: str, after: int = 0) -> Response:
        who = principal(request)
        rollout = await thread(portal.service.rollout, run_id)
        if rollout is not None:
            sites = portal.fleet.sites()
            labels = [sites[s].labels if s in sites else {} for s in rollout_stacks(rollout)]
            if not portal.access.can_all(who, "viewer", labels):
                raise Denied(f"{who.username} is not viewer on every site of rollout {run_id}")
        header = request.headers.get("last-event-id", "")
        start = max(after, int(header) if header.isdigit() else 0)
        poll = settings.stream_poll_s

        async def stream() -> AsyncIterator[ServerSentEvent]:
            seq = start
            state: tuple[object, ...] | None = None
            token = csrf(request)
            seen_end, grace = False, 0
            while True:
                # The state first, then the events: every event written before a final state is sent before
                # the stream closes.
                rollout = await thread(portal.service.rollout, run_id)
                raw = await thread(portal.service.events, run_id, seq)
                for e in raw:
                    seq = max(seq, e.seq)
                    seen_end = seen_end or e.kind in TERMINAL_KINDS
                for view in visible_events(who, raw):
                    html = templates.get_template("_event.html").render(e=view)
                    yield ServerSentEvent(data=html, event="journal", id=str(view["seq"]))
                finished = seen_end
                if rollout is not None:
                    # The status block is sent again whenever the rollout's or a group's state moves.
                    signature = (rollout.state, tuple(g.state for g in rollout.groups), rollout.message)
                    if signature != state:
                        state = signature
                        ctx = rollout_status(who, rollout, token)
                        html = templates.get_template("_rollout_status.html").render(ctx)
                        yield ServerSentEvent(data=html, event="status")
                    # A final state whose closing event is not journaled yet gets a few more polls.
                    finished = rollout.state in TERMINAL_STATES and (seen_end or grace >= 4)
                    grace += rollout.state in TERMINAL_STATES
                if finished:
                    yield ServerSentEvent(data="end", event="close")
                    return
                await anyio.sleep(poll)

        return EventSourceResponse(stream(), ping=15, send_timeout=30)

    @app.get("/rollouts", response_class=HTMLResponse)
    async def rollouts_page(request: Request) -> HTMLResponse:
        who = principal(request)
        sites = visible(who)
        rollouts = sorted(portal.service.rollouts(), key=lambda r: r.created_at or _EPOCH, reverse=True)
        shown = [r for r in rollouts if all(s in sites for s in rollout_stacks(r))]
        ctx = {"rollouts": shown, "sites": sorted(sites), "form": {}, "errors": {}}
        return render(request, "rollouts.html", ctx)

    @app.post("/rollouts", response_class=HTMLResponse)
    async def rollout_start(request: Request) -> Response:
        who = principal(request)
        form = await request.form()
        stacks = [str(s) for s in form.getlist("stacks")] or sorted(visible(who))
        values: dict[str, Any] = {k: str(v) for k, v in form.items() if k not in ("csrftoken", "stacks")}
        values["approve_each_group"] = values.get("approve_each_group") in ("on", "true", "1")
        errors: dict[str, list[str]] = {}
        unknown = sorted(set(stacks) - set(portal.fleet.sites()))
        if unknown:
            errors["stacks"] = [f"unknown site stack(s): {', '.join(unknown)}"]
        strategy: Any = None
        form_model: StrategyForm | None = None
        try:
            form_model = StrategyForm.model_validate({**values, "stacks": stacks})
        except ValidationError as exc:
            for p in from_validation_error("rollout", "", exc):
                errors.setdefault(p.path.split(".", 1)[0] or "_form", []).append(p.message)
        if form_model is not None and not errors:
            sites = portal.fleet.sites()
            try:
                selector = parse_selector(form_model.canary)
            except (SelectorError, ValidationError) as exc:
                errors["canary"] = [str(exc)]
            else:
                canary = [s for s in form_model.stacks if selector.matches(sites[s].labels)]
                if not canary:
                    errors["canary"] = [f"no chosen site matches {form_model.canary!r}: a rollout starts with a canary"]
                labels = {s: sites[s].labels for s in form_model.stacks}
            if not errors:
                try:
                    strategy = portal.strategy(form_model.to_ops(canary, labels))
                except ValidationError as exc:
                    for p in from_validation_error("rollout", "", exc):
                        head = p.path.split(".", 1)[0]
                        errors.setdefault(STRATEGY_FIELDS.get(head, "_form"), []).append(p.message)
        if errors or form_model is None:
            ctx = {"rollouts": [], "sites": sorted(visible(who)), "form": values, "errors": errors}
            return render(request, "rollouts.html", ctx, status_code=422)
        require(who, "operator", form_model.stacks, "rollout.start", ", ".join(form_model.stacks))
        try:
            rollout_id = await thread(portal.service.start_rollout, strategy, who.username)
        except REFUSALS as exc:
            raise Denied(str(exc)) from None
        return RedirectResponse(f"/rollouts/{rollout_id}", status_code=303)

    def rollout_status(who: Principal, r: RolloutView, token: str) -> dict[str, Any]:
        """What the rollout's status block shows this person: state, groups, and the actions they may take."""
        sites = portal.fleet.sites()
        labels = [sites[s].labels if s in sites else {} for s in rollout_stacks(r)]
        return {
            "r": r,
            "state_badge": Markup(_state_badge(r.state)),
            "done": r.state in TERMINAL_STATES,
            "can_operate": portal.access.can_all(who, "operator", labels),
            "can_approve": portal.access.can_all(who, "approver", labels) and r.actor != who.username,
            "own": r.actor == who.username,
            "csrf_token": token,
        }

    @app.get("/rollouts/{rollout_id}", response_class=HTMLResponse)
    async def rollout_page(request: Request, rollout_id: str) -> HTMLResponse:
        who = principal(request)
        r = rollout_or_404(rollout_id)
        stacks = rollout_stacks(r)
        sites = portal.fleet.sites()
        labels = [sites[s].labels if s in sites else {} for s in stacks]
        if not portal.access.can_all(who, "viewer", labels):
            raise Denied(f"{who.username} is not viewer on every site of rollout {rollout_id}")
        events = visible_events(who, await thread(portal.service.events, rollout_id, 0))
        ctx = {**rollout_status(who, r, csrf(request)), "events": events}
        ctx["last_seq"] = events[-1]["seq"] if events else 0
        return render(request, "rollout.html", ctx)

    @app.post("/rollouts/{rollout_id}/{action}")
    async def rollout_action(request: Request, rollout_id: str, action: str) -> Response:
        who = principal(request)
        if action not in ("approve", "pause", "resume", "abort"):
            return Response(f"unknown action {action}", status_code=404)
        r = rollout_or_404(rollout_id)
        role: Role = "approver" if action == "approve" else "operator"
        require(who, role, rollout_stacks(r), f"rollout.{action}", rollout_id)
        if action == "approve" and r.actor == who.username:
            audit(who, "rollout.approve", rollout_id, "denied: nobody approves their own rollout")
            raise Denied("nobody approves their own rollout: another approver must")
        try:
            # The service journals and audits the action (and its refusals) itself.
            await thread(getattr(portal.service, action), rollout_id, who.username)
        except REFUSALS as exc:
            raise Denied(str(exc)) from None
        return RedirectResponse(f"/rollouts/{rollout_id}", status_code=303)

    # ---- registry and audit ----------------------------------------------------------------------------

    @app.get("/registry", response_class=HTMLResponse)
    async def registry_page(request: Request) -> HTMLResponse:
        who = principal(request)
        error, models = None, []
        try:
            models = await thread(portal.registry.models)
        except RegistryError as exc:
            error = str(exc)
        serving: dict[str, list[str]] = {}
        statuses = portal.status.statuses()
        for stack, entry in visible(who).items():
            served = statuses.get(stack, SiteStatus()).served_model_version or entry.version
            if entry.resolved is not None and served:
                serving.setdefault(f"{entry.resolved.profile.model.name} {served}", []).append(stack)
        ctx = {"models": models, "error": error, "serving": serving}
        return render(request, "registry.html", ctx)

    @app.get("/audit", response_class=HTMLResponse)
    async def audit_page(request: Request, limit: int = 200) -> HTMLResponse:
        who = principal(request)
        if not portal.access.is_admin(who):
            raise Denied(f"{who.username} is not admin of the whole fleet")
        entries = await thread(portal.service.audit_log, max(1, min(limit, 5000)))
        return render(request, "audit.html", {"entries": entries})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),
        session_cookie="edgefm_session",
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    return cast(
        ASGIApp,
        asgi_csrf(
            app,
            signing_secret=settings.session_secret.get_secret_value(),
            cookie_secure=settings.secure_cookies,
            always_protect={"/login", "/logout"},
            send_csrf_failed=_csrf_failed,
        ),
    )


async def _csrf_failed(scope: Any, send: Any, reason: Any) -> None:
    why = str(error_messages.get(reason, reason))
    body = f"CSRF check failed ({why}): reload the page and submit the form again.".encode()
    await send(
        {"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"text/plain; charset=utf-8")]}
    )
    await send({"type": "http.response.body", "body": body})


def _local_path(target: str) -> str:
    """Where to go after sign-in: a path on this portal only (never `//host` or `/\\host`, which browsers follow)."""
    if target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return "/"


def _state_badge(state: str) -> str:
    safe = "".join(ch for ch in state if ch.isalnum() or ch == "-")
    return f'<span class="badge state-{safe}" data-state="{safe}">{safe}</span>'


def server_ms(header: str, metric: str = "app") -> float:
    """A `<metric>;dur=` figure of a Server-Timing header, in milliseconds."""
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name == metric:
            return float(dur)
    return math.nan
