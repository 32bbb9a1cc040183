"""The single pull-request comment stays under GitHub's limit at fleet scale and shows what matters first."""

from __future__ import annotations

import json
from pathlib import Path

from edgefm.ops.preview_summary import COMMENT_BUDGET, main, read_previews, render


def _write(d: Path, stack: str, summary: dict[str, int], err: str = "") -> None:
    (d / f"{stack}.json").write_text(json.dumps({"changeSummary": summary, "diagnostics": []}))
    if err:
        (d / f"{stack}.err").write_text(err)


def test_failures_first_then_changes_unchanged_counted(tmp_path: Path) -> None:
    _write(tmp_path, "site-a", {"same": 40})
    _write(tmp_path, "site-b", {"update": 2, "same": 38})
    _write(tmp_path, "hub-access-003", {"create": 2, "same": 110})
    _write(tmp_path, "site-c", {}, err="error: [identity-site-read-only] mandatory violation")
    (tmp_path / "site-d.json").write_text("")  # the preview died before writing JSON
    text = render(read_previews(tmp_path))
    assert "5 stack(s) previewed: **2 failed**, 2 with changes, 1 unchanged." in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["site-c", "site-d", "hub-access-003", "site-b"]
    assert "| `hub-access-003` | changes | 2 | 0 | 0 | 0 |" in text
    assert "identity-site-read-only" in text


def test_3500_changed_stacks_fit_one_comment(tmp_path: Path) -> None:
    for i in range(3500):
        _write(tmp_path, f"site-gen-{i:05d}", {"update": 1, "same": 39})
    text = render(read_previews(tmp_path), "https://github.example/run/1")
    assert len(text) < 65_536 and len(text) <= COMMENT_BUDGET + 200
    assert "3500 stack(s) previewed" in text and "more stack(s) with changes or failures" in text


def test_bad_arguments_get_one_line(tmp_path: Path, capsys: object) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert main([]) == 2
