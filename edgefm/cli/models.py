"""`edgefm models ...`: publish, promote, list, verify and sync foundation-model versions.

Settings come from flags or environment variables: EDGEFM_REGISTRY_* for the hub registry and
EDGEFM_MIRROR_* for a site mirror. Credentials are read from the environment only
(<PREFIX>ACCESS_KEY_ID, <PREFIX>SECRET_ACCESS_KEY, <PREFIX>SESSION_TOKEN), never from flags, so they
do not show in process listings; unset, boto3's standard chain (AWS_*, profiles, roles) applies.

Exit codes: 0 ok, 1 verification found differences, 2 bad input or an S3 error, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from edgefm.cli.console import err, out
from edgefm.registry.catalog import list_models, list_versions, load_manifest
from edgefm.registry.channels import list_channels, promote
from edgefm.registry.errors import RegistryError
from edgefm.registry.progress import NullReporter, Reporter, RichReporter
from edgefm.registry.publish import publish
from edgefm.registry.settings import (
    MIRROR_ENV_PREFIX,
    REGISTRY_ENV_PREFIX,
    AddressingStyle,
    BucketSettings,
    TransferSettings,
)
from edgefm.registry.store import Store
from edgefm.registry.sync import sync
from edgefm.registry.verify import VerifyReport, verify

models_app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

MiB = 1024 * 1024
R = REGISTRY_ENV_PREFIX
M = MIRROR_ENV_PREFIX

# --- shared options ---------------------------------------------------------------------------------
Bucket = Annotated[str | None, typer.Option("--bucket", envvar=f"{R}BUCKET", help="Registry bucket.")]
Prefix = Annotated[
    str | None,
    typer.Option("--prefix", envvar=f"{R}PREFIX", help="Key prefix in the registry (default: models)."),
]
Endpoint = Annotated[
    str | None,
    typer.Option("--endpoint", envvar=f"{R}ENDPOINT_URL", help="S3-compatible endpoint URL (omit for AWS S3)."),
]
Region = Annotated[str | None, typer.Option("--region", envvar=f"{R}REGION", help="(default: us-east-1)")]
Addressing = Annotated[
    AddressingStyle | None,
    typer.Option(
        "--addressing-style",
        envvar=f"{R}ADDRESSING_STYLE",
        help="(default: path with --endpoint, auto for AWS)",
    ),
]
MaxAttempts = Annotated[
    int | None, typer.Option("--max-attempts", envvar=f"{R}MAX_ATTEMPTS", help="S3 retries (default: 5).")
]
MirrorBucket = Annotated[
    str | None,
    typer.Option("--to-bucket", "--mirror-bucket", envvar=f"{M}BUCKET", help="Mirror (site) bucket."),
]
MirrorPrefix = Annotated[
    str | None,
    typer.Option(
        "--to-prefix",
        "--mirror-prefix",
        envvar=f"{M}PREFIX",
        help="Key prefix in the mirror (default: models).",
    ),
]
MirrorEndpoint = Annotated[
    str | None,
    typer.Option("--to-endpoint", "--mirror-endpoint", envvar=f"{M}ENDPOINT_URL", help="Mirror endpoint URL."),
]
MirrorRegion = Annotated[str | None, typer.Option("--to-region", "--mirror-region", envvar=f"{M}REGION")]
MirrorAddressing = Annotated[
    AddressingStyle | None,
    typer.Option("--to-addressing-style", "--mirror-addressing-style", envvar=f"{M}ADDRESSING_STYLE"),
]
Concurrency = Annotated[
    int, typer.Option("--concurrency", envvar="EDGEFM_TRANSFER_CONCURRENCY", help="Parallel parts/requests.")
]
PartSize = Annotated[
    int,
    typer.Option("--part-size-mb", envvar="EDGEFM_TRANSFER_PART_SIZE_MB", help="Multipart part size in MiB."),
]
ShowProgress = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."),
]
Name = Annotated[str, typer.Argument(help="Model name.", envvar="EDGEFM_MODEL_NAME", show_envvar=True)]


def _store(
    env_prefix: str,
    bucket: str | None,
    prefix: str | None,
    endpoint: str | None,
    region: str | None,
    addressing: str | None,
    max_attempts: int | None,
    *,
    pool: int = 10,
) -> Store:
    """Flags (already env-resolved by typer) win; credentials come from ``<env_prefix>*`` env vars."""
    settings = BucketSettings.from_env(
        env_prefix,
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint,
        region=region,
        addressing_style=addressing,
        max_attempts=max_attempts,
    )
    return Store(settings, max_pool_connections=pool)


@dataclass(frozen=True)
class RegistryOptions:
    """The hub registry's location, given once for every `edgefm models` command."""

    bucket: str | None
    prefix: str | None
    endpoint: str | None
    region: str | None
    addressing_style: str | None
    max_attempts: int | None

    def store(self, *, pool: int = 10) -> Store:
        return _store(
            R, self.bucket, self.prefix, self.endpoint, self.region, self.addressing_style, self.max_attempts, pool=pool
        )


@models_app.callback()
def registry_options(
    ctx: typer.Context,
    bucket: Bucket = None,
    prefix: Prefix = None,
    endpoint: Endpoint = None,
    region: Region = None,
    addressing_style: Addressing = None,
    max_attempts: MaxAttempts = None,
) -> None:
    """Publish, promote, list, verify and sync foundation-model versions in the hub registry."""
    ctx.obj = RegistryOptions(bucket, prefix, endpoint, region, addressing_style, max_attempts)


def _registry(ctx: typer.Context) -> RegistryOptions:
    options = ctx.find_object(RegistryOptions)
    assert options is not None  # set by the group callback, which typer always runs first
    return options


@contextlib.contextmanager
def _reporter(show: bool | None) -> Iterator[Reporter]:
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        yield NullReporter()
        return
    with RichReporter(err) as reporter:
        yield reporter


T = TypeVar("T")


def _run(fn: Callable[[], T]) -> T:
    """Run a command body; RegistryError becomes one line on stderr and exit code 2."""
    try:
        return fn()
    except RegistryError as exc:
        err.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]; run the same command again to resume")
        raise typer.Exit(130) from None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _print_report(report: VerifyReport) -> None:
    for diff in report.differences:
        out.print(str(diff), markup=False, soft_wrap=True)
    if report.ok:
        out.print(
            f"OK  {report.name} {report.version}: {report.files_checked} files, "
            f"{_human(report.bytes_checked)} verified in {report.where}",
            soft_wrap=True,
        )
    else:
        out.print(
            f"FAILED  {report.name} {report.version}: {len(report.differences)} difference(s) in {report.where}",
            soft_wrap=True,
        )


def _models_table(store: Store) -> Table:
    table = Table("model", "versions", "latest", "channels", box=None)
    for model in list_models(store):
        versions = [v for v in list_versions(store, model) if v.complete]
        channels = ", ".join(f"{c}={p.version}" for c, p in sorted(list_channels(store, model).items()))
        table.add_row(model, str(len(versions)), versions[-1].version if versions else "-", channels or "-")
    return table


def _versions_table(store: Store, name: str) -> Table:
    by_version: dict[str, list[str]] = {}
    for channel, pointer in sorted(list_channels(store, name).items()):
        by_version.setdefault(pointer.version, []).append(channel)
    table = Table("version", "files", "size", "framework", "created", "channels", box=None)
    for info in list_versions(store, name):
        m = info.manifest
        tags = ", ".join(by_version.get(info.version, [])) or "-"
        if m is None:
            table.add_row(info.version, "-", "-", "-", "incomplete (no manifest)", tags)
        else:
            created = m.created_at.strftime("%Y-%m-%d %H:%M UTC")
            table.add_row(m.version, str(len(m.files)), _human(m.total_size), m.framework, created, tags)
    return table


# --- commands ---------------------------------------------------------------------------------------
@models_app.command("publish")
def publish_cmd(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Model directory to upload.")],
    name: Annotated[str, typer.Option("--name", help="Model name.")],
    version: Annotated[str, typer.Option("--version", help="Semantic version, e.g. 1.4.0.")],
    framework: Annotated[str | None, typer.Option(help="Framework (default: guessed from file types).")] = None,
    source: Annotated[str | None, typer.Option(help="Where the model came from (default: host and path).")] = None,
    resume_dir: Annotated[
        Path | None, typer.Option(envvar="EDGEFM_RESUME_DIR", help="Resume journal directory.")
    ] = None,
    concurrency: Concurrency = 8,
    part_size_mb: PartSize = 16,
    progress: ShowProgress = None,
) -> None:
    """Upload DIRECTORY as NAME VERSION; the manifest goes last, existing versions are never overwritten."""

    def body() -> None:
        transfer = TransferSettings(part_size=part_size_mb * MiB, max_concurrency=concurrency)
        pool = transfer.max_concurrency + 2
        store = _registry(ctx).store(pool=pool)
        started = time.monotonic()
        with _reporter(progress) as reporter:
            result = publish(
                store,
                directory,
                name,
                version,
                transfer=transfer,
                framework=framework,
                source=source,
                journal_dir=resume_dir,
                reporter=reporter,
            )
        took = time.monotonic() - started
        m, s = result.manifest, result.stats
        out.print(
            f"published {m.name} {m.version} to {store.settings.url}: {len(m.files)} files, "
            f"{_human(m.total_size)} in {took:.1f}s ({m.total_size / MiB / max(took, 1e-9):.0f} MiB/s)",
            soft_wrap=True,
        )
        if s.files_skipped or s.parts_reused:
            out.print(
                f"resumed: {s.files_skipped} files already uploaded, {s.parts_reused} parts reused, "
                f"{s.parts_sent} parts sent"
            )
        if s.stale_removed:
            out.print(f"removed {len(s.stale_removed)} leftover object(s) from an earlier attempt")

    _run(body)


@models_app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Published version.")],
    channel: Annotated[str, typer.Option("--channel", help="Channel, e.g. stable or canary.")],
) -> None:
    """Point CHANNEL of NAME at VERSION (which must have a manifest)."""

    def body() -> None:
        store = _registry(ctx).store()
        pointer = promote(store, name, version, channel)
        was = f" (was {pointer.previous})" if pointer.previous else ""
        out.print(f"{name} {channel} -> {pointer.version}{was}")

    _run(body)


@models_app.command("list")
def list_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Model name; omit to list models.")] = None,
) -> None:
    """List models, or the versions and channels of NAME."""

    def body() -> None:
        store = _registry(ctx).store()
        store.check()
        out.print(_models_table(store) if name is None else _versions_table(store, name))

    _run(body)


@models_app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Published version.")],
    mirror_bucket: MirrorBucket = None,
    mirror_prefix: MirrorPrefix = None,
    mirror_endpoint: MirrorEndpoint = None,
    mirror_region: MirrorRegion = None,
    mirror_addressing_style: MirrorAddressing = None,
    progress: ShowProgress = None,
) -> None:
    """Check a copy of NAME VERSION against the registry's manifest: missing, extra and corrupted files.

    Checks the mirror when a mirror bucket is given (--mirror-bucket or EDGEFM_MIRROR_BUCKET),
    else the registry itself. Every file's sha256 is recomputed.
    """

    def body() -> int:
        registry = _registry(ctx).store()
        registry.check()
        manifest = load_manifest(registry, name, version)
        target = registry
        if mirror_bucket is not None:
            m = (mirror_bucket, mirror_prefix, mirror_endpoint, mirror_region, mirror_addressing_style)
            target = _store(M, *m, _registry(ctx).max_attempts)
            target.check()
        err.print(f"verifying {name} {version} in {target.settings.where}", soft_wrap=True)
        with _reporter(progress) as reporter:
            report = verify(manifest, target, check_manifest_copy=target is not registry, reporter=reporter)
        _print_report(report)
        return 0 if report.ok else 1

    raise typer.Exit(_run(body))


@models_app.command("sync")
def sync_cmd(
    ctx: typer.Context,
    name: Name,
    version: Annotated[
        str | None, typer.Option("--version", envvar="EDGEFM_MODEL_VERSION", help="Version to mirror.")
    ] = None,
    channel: Annotated[
        str | None,
        typer.Option("--channel", envvar="EDGEFM_MODEL_CHANNEL", help="Or: the channel to follow."),
    ] = None,
    to_bucket: MirrorBucket = None,
    to_prefix: MirrorPrefix = None,
    to_endpoint: MirrorEndpoint = None,
    to_region: MirrorRegion = None,
    to_addressing_style: MirrorAddressing = None,
    concurrency: Concurrency = 8,
    part_size_mb: PartSize = 16,
    progress: ShowProgress = None,
) -> None:
    """Mirror NAME (--version V or --channel C) from the registry into a site bucket, then verify it.

    Made for the site's ModelSync CronJob: everything can come from env vars (EDGEFM_MODEL_NAME,
    EDGEFM_MODEL_VERSION or EDGEFM_MODEL_CHANNEL, EDGEFM_REGISTRY_*, EDGEFM_MIRROR_*). Idempotent:
    files already mirrored are skipped; the manifest (and channel pointer) is written only after
    the files verify.
    """

    def body() -> int:
        transfer = TransferSettings(part_size=part_size_mb * MiB, max_concurrency=concurrency)
        pool = transfer.max_concurrency * 2 + 4
        registry = _registry(ctx).store(pool=pool)
        mirror = _store(
            M, to_bucket, to_prefix, to_endpoint, to_region, to_addressing_style, _registry(ctx).max_attempts, pool=pool
        )
        started = time.monotonic()
        with _reporter(progress) as reporter:
            result = sync(
                registry, mirror, name, version=version, channel=channel, transfer=transfer, reporter=reporter
            )
        via = f" (channel {channel})" if channel else ""
        out.print(
            f"synced {name} {result.version}{via} to {mirror.settings.where}: {len(result.copied)} copied, "
            f"{result.skipped} already present, {len(result.removed)} removed "
            f"in {time.monotonic() - started:.1f}s",
            soft_wrap=True,
        )
        if result.repaired:
            out.print(f"re-copied after verify: {', '.join(result.repaired)}", soft_wrap=True)
        assert result.report is not None
        _print_report(result.report)
        return 0 if result.ok else 1

    raise typer.Exit(_run(body))
