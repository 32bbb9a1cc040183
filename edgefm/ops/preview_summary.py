"""One pull-request comment for every stack a change previews, however many: totals, then the stacks that
change or fail (each with its counts), then how many are unchanged. GitHub caps a comment at 65,536
characters, so at fleet scale the rows stop at a budget and the rest is counted (all previews stay in the
run's artifacts).

    python -m edgefm.ops.preview_summary DIR > summary.md

DIR holds, per stack, `<stack>.json` (`pulumi preview --json`) and, when the preview failed, `<stack>.err`.
Standard library only: the CI summary job runs it without installing the project.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

COMMENT_BUDGET: Final = 60_000
OPS: Final = ("create", "update", "replace", "delete")


@dataclass
class StackPreview:
    stack: str
    ok: bool
    changes: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def changed(self) -> bool:
        return any(self.changes.get(op, 0) for op in OPS)


def read_previews(directory: Path) -> list[StackPreview]:
    out = []
    for path in sorted(directory.glob("*.json")):
        stack = path.stem
        err = directory / f"{stack}.err"
        error = err.read_text(errors="replace").strip() if err.exists() else ""
        try:
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict):
                raise json.JSONDecodeError("not an object", "", 0)
        except json.JSONDecodeError:
            out.append(StackPreview(stack, False, error=error or "the preview wrote no JSON"))
            continue
        summary = {k: int(v) for k, v in (doc.get("changeSummary") or {}).items()}
        failed = bool(error) or any(d.get("severity") == "error" for d in doc.get("diagnostics") or [])
        if failed and not error:
            error = next(d.get("message", "") for d in doc["diagnostics"] if d.get("severity") == "error")
        out.append(StackPreview(stack, not failed, summary, error))
    return out


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if "error" in ln.lower()), text.strip()[:200])
    return line.replace("|", "\\|")[:200]


def render(previews: list[StackPreview], run_url: str = "") -> str:
    failed = [p for p in previews if not p.ok]
    changed = [p for p in previews if p.ok and p.changed]
    unchanged = len(previews) - len(failed) - len(changed)
    head = [
        "### edgefm preview",
        "",
        f"{len(previews)} stack(s) previewed: **{len(failed)} failed**, {len(changed)} with changes, "
        f"{unchanged} unchanged.",
        "",
        "| stack | result | create | update | replace | delete |",
        "|---|---|---:|---:|---:|---:|",
    ]
    rows, size, left = [], sum(len(h) + 1 for h in head), 0
    for p in failed + changed:
        result = f"failed: {_first_line(p.error)}" if not p.ok else "changes"
        row = f"| `{p.stack}` | {result} | " + " | ".join(str(p.changes.get(op, 0)) for op in OPS) + " |"
        if size + len(row) + 1 > COMMENT_BUDGET:
            left += 1
            continue
        rows.append(row)
        size += len(row) + 1
    tail = []
    if left:
        tail.append(f"\n…and {left} more stack(s) with changes or failures: see the run's preview artifacts.")
    if run_url:
        tail.append(f"\n[The run]({run_url})")
    return "\n".join(head + rows + tail) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m edgefm.ops.preview_summary DIR [RUN_URL]", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    if not directory.is_dir():
        print(f"preview_summary: {directory} is not a directory", file=sys.stderr)
        return 2
    sys.stdout.write(render(read_previews(directory), argv[1] if len(argv) == 2 else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
