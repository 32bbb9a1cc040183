"""The durable journal of fleet operations (SQLAlchemy 2; the schema is made by the Alembic migrations beside
this module, `edgefm/ops/migrations`).

Tables:
- `runs`: one row per rollout or per batch job (preview, drift, reconcile): kind, actor, strategy, state, the
  state its operators asked for (`desired`: running, paused, aborted), and the last event sequence number.
- `rollout_groups`: a rollout's groups in order, with their state, approval and soak.
- `site_runs`: one operation on one stack: operation, state, phase reached, attempt, actor, worker, timings
  (queued, started, finished; preview, update and health seconds), change counts and the error; what a drift
  check found, and the stack's outputs after an update (secret outputs masked).
- `previews`: the planned steps of a site run's preview (URN, operation, changed keys).
- `events`: what happened, per run with a gapless sequence number (`seq` from 1), so a reader can stream them
  and resume after the last `seq` it saw. Event data is redacted before it is stored.
- `audit`: who did what to which target, with which result (`at, actor, action, target, result`).

Times are seconds since the epoch (floats): cheap to write in bulk and exact to compare; readers turn them into
datetimes. Writes go through `Batch`, which sends each table's rows in one statement, so a controller
driving thousands of sites pays per tick rather than per row.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    case,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MIGRATIONS = Path(__file__).parent / "migrations"

# Run states. `desired` is what operators ask for; the controller moves `state` towards it.
RUNNING, PAUSED, ABORTED = "running", "paused", "aborted"
QUEUED, WAITING_APPROVAL, SUCCEEDED, FAILED = "queued", "waiting-approval", "succeeded", "failed"
FINAL = frozenset({SUCCEEDED, FAILED, ABORTED})
# Operations whose preview the guardrails judged (a site's "last preview"), and those that check for drift.
PREVIEW_OPERATIONS = ("preview", "update", "check")
DRIFT_OPERATIONS = ("drift", "reconcile")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(24))
    desired: Mapped[str] = mapped_column(String(16))
    stacks: Mapped[list[Any]] = mapped_column(JSON)
    strategy: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)


class GroupRow(Base):
    __tablename__ = "rollout_groups"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    stacks: Mapped[list[Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(24))
    approved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    approved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    soak_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class SiteRunRow(Base):
    __tablename__ = "site_runs"
    id: Mapped[str] = mapped_column(String(300), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    group_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    stack: Mapped[str] = mapped_column(String(200))
    operation: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16), default="")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    actor: Mapped[str] = mapped_column(String(200))
    worker: Mapped[str] = mapped_column(String(200), default="")
    queued_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    preview_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    update_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    health_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A drift check's drifted resources (urn, type, op, keys); the stack's outputs after an update (secret
    # values masked, see `public_outputs`). NULL where the operation has none to report.
    drift: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    __table_args__ = (Index("ix_site_runs_stack_queued", "stack", "queued_at"), Index("ix_site_runs_run", "run_id"))


class PreviewRow(Base):
    __tablename__ = "previews"
    site_run_id: Mapped[str] = mapped_column(ForeignKey("site_runs.id", ondelete="CASCADE"), primary_key=True)
    stack: Mapped[str] = mapped_column(String(200))
    at: Mapped[float] = mapped_column(Float)
    steps: Mapped[list[Any]] = mapped_column(JSON)
    advisories: Mapped[list[Any]] = mapped_column(JSON)


class EventRow(Base):
    __tablename__ = "events"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(40))
    stack: Mapped[str | None] = mapped_column(String(200), nullable=True)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class AuditRow(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(300))
    result: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_audit_at", "at"),)


# Keys whose values never reach the journal, and Pulumi's marker for a secret value in engine events.
_SECRET_KEY = re.compile(r"(password|passphrase|secret|token|private.?key|credential|kubeconfig|tls\.key)", re.I)
_PULUMI_SECRET_SIG = "4dabf18193072939515e22adb298388d"
REDACTED = "[secret]"


def redact(value: Any) -> Any:
    """`value` with secret-looking keys' values and Pulumi secret values replaced by "[secret]"."""
    if isinstance(value, Mapping):
        if _PULUMI_SECRET_SIG in value:
            return REDACTED
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


@dataclass(frozen=True)
class Event:
    """One journal event of a run, as a portal streams it (`seq` orders and resumes the stream)."""

    seq: int
    at: datetime
    kind: str
    stack: str | None
    message: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SiteRunRecord:
    """A site run as a fleet-wide read returns it: the `site_runs` row without its outputs, as a plain
    object (an ORM instance per row costs more than the query at thousands of sites)."""

    id: str
    run_id: str
    group_name: str | None
    stack: str
    operation: str
    state: str
    phase: str
    attempt: int
    actor: str
    worker: str
    queued_at: float
    started_at: float | None
    finished_at: float | None
    preview_seconds: float | None
    update_seconds: float | None
    health_seconds: float | None
    changes: dict[str, Any] | None
    error: str | None
    drift: list[Any] | None


_RECORD_COLUMNS = tuple(SiteRunRecord.__dataclass_fields__)


@dataclass(frozen=True)
class SiteSummary:
    """What a fleet overview shows of one stack, read for every stack at once (`Journal.site_summaries`).

    `last_run`: its newest operation. `last_preview`: its newest operation with a judged preview (preview,
    update, check), whose guardrail findings are `advisories`. `drift_check`: its newest successful drift
    check or reconcile; `drift` is what that check found (a reconcile put everything back: none)."""

    stack: str
    last_run: SiteRunRecord | None = None
    last_preview: SiteRunRecord | None = None
    advisories: tuple[str, ...] = ()
    drift_check: SiteRunRecord | None = None

    @property
    def drift(self) -> list[dict[str, Any]]:
        check = self.drift_check
        if check is None or check.operation != "drift":
            return []
        return list(check.drift or [])


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str
    result: str


def _when(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def _migrations_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@dataclass
class Batch:
    """Rows to write together: `Journal.write(batch)` sends each kind in one statement in one transaction."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    group_updates: list[dict[str, Any]] = field(default_factory=list)
    site_runs: list[dict[str, Any]] = field(default_factory=list)
    site_updates: list[dict[str, Any]] = field(default_factory=list)
    previews: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    run_updates: list[dict[str, Any]] = field(default_factory=list)

    def event(
        self,
        run_id: str,
        kind: str,
        message: str,
        *,
        stack: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: float | None = None,
        trusted: bool = False,
    ) -> None:
        """Queues an event; its data is redacted unless the caller built it from values known not to be secret."""
        self.events.setdefault(run_id, []).append(
            {
                "at": time.time() if at is None else at,
                "kind": kind,
                "stack": stack,
                "message": message,
                "data": dict(data or {}) if trusted else redact(dict(data or {})),
            }
        )

    def __bool__(self) -> bool:
        return any(
            (
                self.runs,
                self.groups,
                self.group_updates,
                self.site_runs,
                self.site_updates,
                self.previews,
                self.events,
                self.run_updates,
            )
        )


_JSON_COLUMNS = frozenset(
    {"stacks", "strategy", "changes", "steps", "advisories", "data", "context", "drift", "outputs"}
)


def _dumps(value: Any) -> str:
    # orjson: a tenth of the json module's time, which a controller journaling thousands of sites notices.
    return orjson.dumps(value).decode()


class _Writer:
    """Executes a batch through the driver's cursor: SQLAlchemy builds each statement's text once per dialect
    and column set, and rows go straight to `executemany`. This is the controller's hot path: through
    SQLAlchemy's per-row parameter processing a tick costs about 50 times more CPU than the database does."""

    def __init__(self, dialect: str) -> None:
        self.mark = "?" if dialect == "sqlite" else "%s"
        # PostgreSQL gets JSON as text with a cast in the statement: cheaper than an adapter object per value.
        self.json_mark = "%s::json" if dialect == "postgresql" else self.mark
        self.json = _dumps
        self.sql: dict[tuple[str, str, tuple[str, ...]], str] = {}

    def _params(self, group: list[dict[str, Any]], order: list[int], json_at: list[int]) -> list[list[Any]]:
        dumps = self.json
        params = []
        for row in group:
            values = list(row.values())
            for i in json_at:
                if values[i] is not None:
                    values[i] = dumps(values[i])
            params.append([values[i] for i in order])
        return params

    def insert(self, cursor: Any, table: str, rows: list[dict[str, Any]]) -> None:
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            by_columns.setdefault(tuple(row), []).append(row)
        for columns, group in by_columns.items():
            key = ("insert", table, columns)
            sql = self.sql.get(key)
            if sql is None:
                marks = ", ".join(self.json_mark if c in _JSON_COLUMNS else self.mark for c in columns)
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                self.sql[key] = sql
            json_at = [i for i, c in enumerate(columns) if c in _JSON_COLUMNS]
            cursor.executemany(sql, self._params(group, list(range(len(columns))), json_at))

    def update(self, cursor: Any, table: str, rows: list[dict[str, Any]]) -> None:
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            by_columns.setdefault(tuple(row), []).append(row)
        for columns, group in by_columns.items():
            keys = [i for i, c in enumerate(columns) if c.startswith("k_")]
            values = [i for i, c in enumerate(columns) if not c.startswith("k_")]
            sql_key = ("update", table, columns)
            sql = self.sql.get(sql_key)
            if sql is None:
                sets = ", ".join(
                    f"{columns[i]} = {self.json_mark if columns[i] in _JSON_COLUMNS else self.mark}" for i in values
                )
                where = " AND ".join(f"{columns[i][2:]} = {self.mark}" for i in keys)
                sql = f"UPDATE {table} SET {sets} WHERE {where}"
                self.sql[sql_key] = sql
            json_at = [i for i in values if columns[i] in _JSON_COLUMNS]
            cursor.executemany(sql, self._params(group, values + keys, json_at))

    def next_seq(self, cursor: Any, run_id: str, n: int) -> int:
        # The row lock this UPDATE takes serialises writers of one run, so sequence numbers stay gapless.
        cursor.execute(
            f"UPDATE runs SET last_seq = last_seq + {self.mark} WHERE id = {self.mark} RETURNING last_seq", (n, run_id)
        )
        row = cursor.fetchone()
        if row is None:
            raise LookupError(f"no run {run_id!r} in the journal")
        return int(row[0])


class Journal:
    """The journal at a SQLAlchemy URL (`postgresql+psycopg://…` for a fleet, `sqlite:///file` on one machine).

    `Journal(url)` brings the schema up to the newest migration first (`migrate=False` skips that)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=url.startswith("postgresql"))
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif url.startswith("postgresql+psycopg"):
            event.listen(self.engine, "connect", _orjson_loads)
        self._writer = _Writer(self.engine.dialect.name)
        self._raw: Any = None
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        config = _migrations_config(self.url)
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        self.engine.dispose()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- writes -----------------------------------------------------------------------------------------------

    def write(self, batch: Batch, *, settle_run: str | None = None) -> None:
        """Writes the batch in one transaction on a DBAPI connection kept for writing: a controller writes once
        per tick, and a pooled SQLAlchemy connection per write would cost more than the rows."""
        if not batch:
            return
        if self._raw is None:
            self._raw = self.engine.raw_connection()
        raw = self._raw
        cursor = raw.cursor()
        try:
            self._write(cursor, batch)
            if settle_run is not None:
                self._settle(cursor, settle_run)
            raw.commit()
        except Exception:
            with contextlib.suppress(Exception):
                raw.rollback()
            raw.close()
            self._raw = None
            raise
        finally:
            cursor.close()

    def _write(self, cursor: Any, batch: Batch) -> None:
        w = self._writer
        if batch.runs:
            w.insert(cursor, "runs", batch.runs)
        if batch.groups:
            w.insert(cursor, "rollout_groups", batch.groups)
        if batch.site_runs:
            w.insert(cursor, "site_runs", batch.site_runs)
        if batch.site_updates:
            w.update(cursor, "site_runs", batch.site_updates)
        if batch.previews:
            w.insert(cursor, "previews", batch.previews)
        if batch.group_updates:
            w.update(cursor, "rollout_groups", batch.group_updates)
        if batch.run_updates:
            w.update(cursor, "runs", batch.run_updates)
        for run_id, rows in batch.events.items():
            first = w.next_seq(cursor, run_id, len(rows)) - len(rows) + 1
            for i, row in enumerate(rows):
                row["run_id"], row["seq"] = run_id, first + i
            w.insert(cursor, "events", rows)

    def _settle(self, cursor: Any, run_id: str) -> None:
        """Ends a batch run (previews, drift) once its last site run has: the run row is locked by this
        transaction's event write, so of two workers finishing at once exactly one sees the count reach zero."""
        cursor.execute(f"SELECT state FROM site_runs WHERE run_id = {self._writer.mark}", (run_id,))
        states = [row[0] for row in cursor.fetchall()]
        if not states or any(s not in FINAL for s in states):
            return
        failed = sum(s == FAILED for s in states)
        state = FAILED if failed else SUCCEEDED
        message = f"{len(states) - failed} of {len(states)} stack(s) succeeded"
        batch = Batch(run_updates=[{"k_id": run_id, "state": state, "finished_at": time.time(), "message": message}])
        batch.event(run_id, f"run.{state}", message, trusted=True)
        self._write(cursor, batch)

    def finished_site_runs(self, ids: Sequence[str]) -> list[SiteRunRow]:
        if not ids:
            return []
        site = SiteRunRow.__table__
        query = select(site).where(site.c.id.in_(list(ids)), site.c.state.in_([SUCCEEDED, FAILED]))
        with self.engine.connect() as conn:
            return [SiteRunRow(**r) for r in conn.execute(query).mappings()]

    def create_run(
        self,
        kind: str,
        actor: str,
        stacks: Sequence[str],
        *,
        strategy: Mapping[str, Any] | None = None,
        groups: Sequence[tuple[str, Sequence[str]]] = (),
        run_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> str:
        run_id = run_id or new_id()
        now = time.time()
        batch = Batch()
        batch.runs.append(
            {
                "id": run_id,
                "kind": kind,
                "actor": actor,
                "created_at": now,
                "state": QUEUED,
                "desired": RUNNING,
                "stacks": list(stacks),
                "strategy": dict(strategy) if strategy is not None else None,
                "message": "",
                "last_seq": 0,
                "context": dict(context) if context is not None else None,
            }
        )
        batch.groups += [
            {"run_id": run_id, "position": i, "name": name, "stacks": list(members), "state": QUEUED}
            for i, (name, members) in enumerate(groups)
        ]
        batch.event(
            run_id,
            f"{kind}.created",
            f"{kind} of {len(stacks)} stack(s) by {actor}",
            data={"stacks": list(stacks), "groups": [name for name, _ in groups]},
            at=now,
        )
        self.write(batch)
        return run_id

    def set_desired(self, run_id: str, desired: str, actor: str) -> None:
        batch = Batch(run_updates=[{"k_id": run_id, "desired": desired}])
        batch.event(run_id, f"rollout.{desired}-requested", f"{desired} requested by {actor}", data={"actor": actor})
        self.write(batch)

    def approve_group(self, run_id: str, position: int, actor: str) -> str | None:
        """Records `actor`'s approval of the group unless it has one already; returns None when this call
        approved it, else who had. The conditional UPDATE decides: of two approvals at once, exactly one finds
        the group unapproved (PostgreSQL re-reads the row the first one locked; SQLite serialises writers)."""
        groups = GroupRow.__table__
        with self.engine.begin() as conn:
            won = conn.execute(
                update(GroupRow)
                .where(groups.c.run_id == run_id, groups.c.position == position, groups.c.approved_by.is_(None))
                .values(approved_by=actor, approved_at=time.time())
            ).rowcount
            if not won:
                found = conn.execute(
                    select(groups.c.approved_by).where(groups.c.run_id == run_id, groups.c.position == position)
                ).scalar_one_or_none()
                return str(found or "someone")
            name = conn.execute(
                select(groups.c.name).where(groups.c.run_id == run_id, groups.c.position == position)
            ).scalar_one()
            batch = Batch()
            batch.event(run_id, "group.approved", f"group {name} approved by {actor}", data={"actor": actor})
            # The approval and its event commit together, on this transaction's connection.
            cursor = conn.connection.cursor()
            try:
                self._write(cursor, batch)
            finally:
                cursor.close()
        return None

    def audit(self, actor: str, action: str, target: str, result: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(AuditRow).values(at=time.time(), actor=actor, action=action, target=target, result=result)
            )

    # -- reads --------------------------------------------------------------------------------------------------

    def run(self, run_id: str) -> RunRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(RunRow.__table__).where(RunRow.id == run_id)).mappings().first()
        return RunRow(**row) if row else None

    def runs(self, kind: str | None = None, limit: int = 100) -> list[RunRow]:
        query = select(RunRow.__table__).order_by(RunRow.created_at.desc()).limit(limit)
        if kind is not None:
            query = query.where(RunRow.kind == kind)
        with self.engine.connect() as conn:
            return [RunRow(**r) for r in conn.execute(query).mappings()]

    def groups(self, run_id: str) -> list[GroupRow]:
        query = select(GroupRow.__table__).where(GroupRow.run_id == run_id).order_by(GroupRow.position)
        with self.engine.connect() as conn:
            return [GroupRow(**r) for r in conn.execute(query).mappings()]

    def site_runs(
        self, *, run_id: str | None = None, stack: str | None = None, limit: int = 100_000
    ) -> list[SiteRunRow]:
        query = select(SiteRunRow.__table__).order_by(SiteRunRow.queued_at.desc()).limit(limit)
        if run_id is not None:
            query = query.where(SiteRunRow.run_id == run_id)
        if stack is not None:
            query = query.where(SiteRunRow.stack == stack)
        with self.engine.connect() as conn:
            return [SiteRunRow(**r) for r in conn.execute(query).mappings()]

    def site_summaries(self, stacks: Sequence[str] | None = None) -> dict[str, SiteSummary]:
        """Every stack's newest run, newest judged preview (with its findings) and newest drift check, in one
        query: each site run is ranked within its stack overall and within its kind (window functions, which
        PostgreSQL and SQLite both have), and only the first of each is read back."""
        site, preview = SiteRunRow.__table__, PreviewRow.__table__
        kind = case(
            (and_(site.c.operation.in_(DRIFT_OPERATIONS), site.c.state == SUCCEEDED), "drift"),
            (and_(site.c.operation.in_(PREVIEW_OPERATIONS), preview.c.site_run_id.is_not(None)), "preview"),
            else_="other",
        )
        newest = (site.c.queued_at.desc(), site.c.id.desc())
        ranked = select(
            site.c.id,
            kind.label("kind"),
            func.row_number().over(partition_by=site.c.stack, order_by=newest).label("rank_all"),
            func.row_number().over(partition_by=(site.c.stack, kind), order_by=newest).label("rank_kind"),
        ).select_from(site.outerjoin(preview, preview.c.site_run_id == site.c.id))
        if stacks is not None:
            ranked = ranked.where(site.c.stack.in_(list(stacks)))
        top = ranked.subquery("ranked")
        first_of_kind = top.c.rank_kind == 1
        # Only what the row is read for: drift of the drift checks, findings of the judged previews.
        columns = [site.c[c] for c in _RECORD_COLUMNS if c != "drift"]
        query = (
            select(
                *columns,
                case((and_(first_of_kind, top.c.kind == "drift"), site.c.drift), else_=None).label("drift"),
                top.c.kind,
                top.c.rank_all,
                first_of_kind.label("first_of_kind"),
                case((and_(first_of_kind, top.c.kind == "preview"), preview.c.advisories), else_=None),
            )
            .select_from(top.join(site, site.c.id == top.c.id).outerjoin(preview, preview.c.site_run_id == top.c.id))
            .where(or_(top.c.rank_all == 1, and_(first_of_kind, top.c.kind != "other")))
        )
        found: dict[str, dict[str, Any]] = {}
        width = len(_RECORD_COLUMNS)
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                row = SiteRunRecord(*r[:width])
                kind, rank_all, first, advisories = r[width:]
                parts = found.get(row.stack)
                if parts is None:
                    parts = found[row.stack] = {"stack": row.stack}
                if rank_all == 1:
                    parts["last_run"] = row
                if first and kind == "preview":
                    parts["last_preview"] = row
                    parts["advisories"] = tuple(str(a) for a in advisories or ())
                elif first and kind == "drift":
                    parts["drift_check"] = row
        return {stack: SiteSummary(**parts) for stack, parts in found.items()}

    def outputs(self, stack: str) -> dict[str, Any] | None:
        """The stack's outputs as its newest update recorded them (secret outputs masked); None if none did."""
        site = SiteRunRow.__table__
        query = (
            select(site.c.outputs)
            .where(site.c.stack == stack, site.c.outputs.is_not(None))
            .order_by(site.c.queued_at.desc(), site.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return dict(row[0]) if row is not None and row[0] is not None else None

    def preview(self, site_run_id: str) -> PreviewRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(PreviewRow.__table__).where(PreviewRow.site_run_id == site_run_id)).mappings()
            first = row.first()
        return PreviewRow(**first) if first else None

    def events(self, run_id: str, after_seq: int = 0, limit: int = 10_000) -> list[Event]:
        query = (
            select(EventRow.seq, EventRow.at, EventRow.kind, EventRow.stack, EventRow.message, EventRow.data)
            .where(EventRow.run_id == run_id, EventRow.seq > after_seq)
            .order_by(EventRow.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [Event(r.seq, _when(r.at), r.kind, r.stack, r.message, redact(r.data)) for r in conn.execute(query)]

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        query = select(AuditRow.__table__).order_by(AuditRow.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [AuditEntry(_when(r.at), r.actor, r.action, r.target, r.result) for r in conn.execute(query)]


def _orjson_loads(dbapi_connection: Any, _record: Any) -> None:
    # JSON columns parsed by orjson: a fleet-wide read decodes thousands of values, at a tenth of json's cost.
    from psycopg.types.json import set_json_loads

    set_json_loads(orjson.loads, dbapi_connection)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (a CLI showing events) read while the controller writes; NORMAL sync is durable across
    # a killed process (only a power loss can drop the last transactions).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
