"""Progress reporting: a protocol the transfer code calls, a silent default and a rich bar."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class Reporter(Protocol):
    def phase(self, description: str, total: int) -> None:
        """Start a new phase of ``total`` bytes (hashing, uploading, verifying ...)."""

    def advance(self, nbytes: int) -> None:
        """Called from worker threads as bytes are done."""


class NullReporter:
    def phase(self, description: str, total: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass


class RichReporter:
    """A rich progress bar on stderr (stdout stays for results); use as a context manager."""

    def __init__(self, console: Console | None = None):
        self._progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def phase(self, description: str, total: int) -> None:
        self._task = self._progress.add_task(description, total=total)

    def advance(self, nbytes: int) -> None:
        # Progress.advance takes its own lock, so worker threads may call this directly.
        if self._task is not None:
            self._progress.advance(self._task, nbytes)
