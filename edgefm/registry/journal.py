"""A local resume journal for multipart uploads.

S3 can list an unfinished upload's parts (ListParts) but not the metadata it was started with, so
the journal remembers which UploadId belongs to which file *content* (its sha256). On resume the
parts the server already holds are checked against the local bytes (size and MD5/CRC32) and only
the rest are sent. The journal is one JSON file per (endpoint, bucket, object key prefix), deleted
once the version is published.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError


def default_journal_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgefm" / "uploads"


class PendingUpload(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    sha256: str
    size: int
    part_size: int
    upload_id: str


class Journal:
    """Not thread-safe by design: only the coordinating thread records uploads."""

    def __init__(self, directory: Path, scope: str):
        digest = hashlib.sha256(scope.encode()).hexdigest()[:24]
        self.path = directory / f"{digest}.json"
        self.scope = scope
        self._uploads: dict[str, PendingUpload] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self._uploads = {k: PendingUpload.model_validate(v) for k, v in raw.get("uploads", {}).items()}
            except (ValueError, ValidationError):
                self._uploads = {}  # a damaged journal only costs re-sending parts

    def get(self, key: str) -> PendingUpload | None:
        return self._uploads.get(key)

    def record(self, upload: PendingUpload) -> None:
        self._uploads[upload.key] = upload
        self._save()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = {"scope": self.scope, "uploads": {k: v.model_dump() for k, v in self._uploads.items()}}
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a journal
