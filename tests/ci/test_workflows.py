"""The GitHub Actions workflow: actionlint-clean, actions pinned by commit, least privilege, and wired to
`edgefm affected` and the guardrails pack."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci.actionlint import ACTIONLINT_VERSION, BootstrapError, ensure_actionlint

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "edgefm.yaml"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc  # type: ignore[no-any-return]


def steps(job: str) -> list[dict[str, Any]]:
    return load()["jobs"][job]["steps"]  # type: ignore[no-any-return]


def test_actionlint_passes(actionlint: Path) -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    assert files, "no workflow files"
    done = subprocess.run(
        [str(actionlint), "-color=false", *files], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(actionlint: Path, tmp_path: Path) -> None:
    """Guards the check itself: the same binary must reject a workflow with an undefined job output."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ needs.nope.outputs.x }}\n"
    )
    done = subprocess.run([str(actionlint), "-color=false", str(broken)], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "nope" in done.stdout


def test_every_action_is_pinned_to_a_commit_with_its_version_noted() -> None:
    text = WORKFLOW.read_text()
    uses = re.findall(r"uses:\s*(\S+)(.*)", text)
    assert uses
    for ref, comment in uses:
        assert PINNED.match(ref), f"{ref} is not pinned to a full commit SHA"
        assert re.search(r"#\s*v\d+\.\d+\.\d+", comment), f"{ref} lacks a `# vX.Y.Z` comment"


def test_runs_on_pull_requests_and_pushes_to_main() -> None:
    on = load()["on"]
    assert "pull_request" in on and on["push"]["branches"] == ["main"]


def test_permissions_are_minimal() -> None:
    doc = load()
    assert doc["permissions"] == {"contents": "read"}
    for name, job in doc["jobs"].items():
        extra = job.get("permissions", {})
        if name == "summary":
            assert extra == {"contents": "read", "pull-requests": "write"}
        else:
            assert extra == {}, f"job {name} widens permissions"
    for job in ("test", "affected", "preview", "summary"):
        checkout = next(s for s in steps(job) if s.get("uses", "").startswith("actions/checkout@"))
        assert checkout["with"]["persist-credentials"] is False


def test_test_job_runs_make_test_with_go_for_actionlint() -> None:
    runs = [s.get("run") for s in steps("test")]
    assert "make test" in runs
    assert any(s.get("uses", "").startswith("actions/setup-go@") for s in steps("test"))


def test_affected_feeds_batches_to_the_preview_matrix() -> None:
    doc = load()
    affected = doc["jobs"]["affected"]
    step = next(s for s in affected["steps"] if s.get("id") == "affected")
    assert step["env"]["BASE"] == "${{ github.event.pull_request.base.sha || github.event.before }}"
    assert 'edgefm affected --base "$BASE" --json --explain --batches "$PREVIEW_JOBS"' in step["run"]
    # Past GitHub's 256-job matrix limit only by batching: the job count is capped below it.
    assert int(doc["env"]["PREVIEW_JOBS"]) <= 256
    checkout = affected["steps"][0]
    assert checkout["with"]["fetch-depth"] == 0
    assert affected["outputs"]["batches"] == "${{ steps.affected.outputs.batches }}"
    preview = doc["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.affected.outputs.batches) }}"
    assert preview["strategy"]["fail-fast"] is False
    assert "needs.affected.outputs.batches != '[]'" in preview["if"]
    assert set(preview["needs"]) == {"test", "affected"}


def test_preview_runs_every_stack_of_its_batch_with_the_pack() -> None:
    step = next(s for s in steps("preview") if "pulumi preview" in s.get("run", ""))
    assert step["env"]["STACKS"] == "${{ matrix.stacks }}"
    assert "for stack in $STACKS; do" in step["run"]
    pack = re.search(r"--policy-pack (\S+)", step["run"])
    # The pack's executable analyzer, beside its PulumiPolicy.yaml.
    assert pack is not None
    analyzer = ROOT / pack.group(1)
    assert analyzer.is_file() and os.access(analyzer, os.X_OK)
    assert (analyzer.parent / "PulumiPolicy.yaml").is_file()
    assert "--json" in step["run"] and 'exit "$failed"' in step["run"]
    upload = next(s for s in steps("preview") if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and upload["with"]["name"] == "preview-${{ matrix.batch }}"


def test_one_summary_comment_for_the_whole_change() -> None:
    doc = load()
    summary = doc["jobs"]["summary"]
    assert set(summary["needs"]) == {"affected", "preview"}
    assert summary["if"].startswith("always()") and "pull_request" in summary["if"]
    download = next(s for s in summary["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"] == {"pattern": "preview-*", "merge-multiple": True, "path": "previews"}
    post = summary["steps"][-1]["run"]
    assert "python -m edgefm.ops.preview_summary previews" in post
    assert post.count("gh pr comment") == 2 and "--edit-last" in post
    # No job comments per stack any more.
    assert "comment-on-pr" not in WORKFLOW.read_text()


def test_credentials_come_from_repository_secrets() -> None:
    env = load()["jobs"]["preview"]["env"]
    for name in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name] == f"${{{{ secrets.{name} }}}}"
    text = WORKFLOW.read_text()
    used = set(re.findall(r"secrets\.([A-Z_]+)", text))
    assert used == {
        "PULUMI_BACKEND_URL",
        "PULUMI_CONFIG_PASSPHRASE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "EDGEFM_KUBECONFIGS",
    }
    # Secrets reach scripts only through env, never spliced into the script text.
    for job in load()["jobs"].values():
        for step in job["steps"]:
            assert "secrets." not in step.get("run", "")


def test_pulumi_cli_matches_the_pinned_sdk() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    sdk = re.search(r'"pulumi==([\d.]+)"', pyproject)
    assert sdk is not None
    assert load()["env"]["PULUMI_VERSION"] == sdk.group(1)


def test_bootstrap_without_go_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BootstrapError, match="`go` is not on PATH"):
        ensure_actionlint(tmp_path / "cache")


def test_bootstrap_reuses_the_cached_binary_only_at_the_pinned_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    fake = cache / "actionlint"
    fake.write_text(f"#!/bin/sh\necho {ACTIONLINT_VERSION}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert ensure_actionlint(cache) == fake  # no build needed: go is not even on PATH
    fake.write_text("#!/bin/sh\necho v1.6.0\n")
    with pytest.raises(BootstrapError, match="`go` is not on PATH"):
        ensure_actionlint(cache)
