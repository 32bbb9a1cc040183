"""`edgefm affected` on crafted commits in a scratch repository seeded with the real fleet files."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from edgefm.cli import app
from edgefm.model.stacks import access_stack_of
from edgefm.ops.access import write_access_shards
from edgefm.ops.affected import affected_stacks, batches

ROOT = Path(__file__).resolve().parent.parent
SHARDS = ["hub-access-000", "hub-access-001"]
ALL = ["hub", *SHARDS, "site-bridge-north", "site-bridge-south", "site-harbor-ocp", "site-viaduct-cpu"]


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.test",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.test",
            "HOME": str(self.path),
            "PATH": "/usr/bin:/bin",
        }
        done = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True, env=env, check=True)
        return done.stdout.strip()

    def write(self, rel: str, text: str) -> None:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text()

    def edit_yaml(self, rel: str, change: Callable[[Any], None]) -> None:
        doc = yaml.safe_load(self.read(rel))
        change(doc)
        self.write(rel, yaml.safe_dump(doc, sort_keys=False))

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def affected(self, base: str, head: str | None = None) -> list[str]:
        return affected_stacks(self.path, base, head).stacks


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    r = Repo(tmp_path / "fleet")
    r.path.mkdir()
    r.git("init", "-q", "-b", "main")
    shutil.copytree(ROOT / "stacks", r.path / "stacks")
    r.write("policies/placement.yaml", (ROOT / "policies" / "placement.yaml").read_text())
    for rel in (
        "components/site_storage.py",
        "edgefm/program.py",
        "__main__.py",
        "Pulumi.yaml",
        "pyproject.toml",
        "policies/guardrails/__main__.py",
        "README.md",
        "tests/test_x.py",
        ".github/workflows/ci.yaml",
    ):
        r.write(rel, f"# {rel}\n")
    r.commit("fleet")
    yield r


def set_in(*path_and_value: Any) -> Callable[[Any], None]:
    """A change that sets one nested key of a YAML document."""
    *path, value = path_and_value

    def change(doc: Any) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def profile(doc: Any, name: str) -> Any:
    return next(p for p in doc["profiles"] if p["name"] == name)


def test_config_only_change_to_one_site_previews_only_that_site(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit_yaml("stacks/Pulumi.site-bridge-north.yaml", set_in("config", "edgefm:site", "labels", "wave", "3"))
    repo.commit("move bridge-north to wave 3")
    assert repo.affected(base) == ["site-bridge-north"]


def test_docs_tests_and_ci_changes_affect_nothing(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("README.md", "# more words\n")
    repo.write("tests/test_x.py", "# another test\n")
    repo.write(".github/workflows/ci.yaml", "# tweak\n")
    repo.write("docs/runbook.md", "new\n")
    repo.write("images/edgefm-tools/Dockerfile", "FROM scratch\n")
    repo.write("bench/publish_throughput.py", "# bench\n")
    repo.write("edgefm/portal/app.py", "# portal\n")
    repo.write("portal/access.yaml", "# roles\n")
    repo.commit("docs")
    assert repo.affected(base) == []


@pytest.mark.parametrize(
    "path",
    [
        "components/site_storage.py",
        "edgefm/program.py",
        "__main__.py",
        "Pulumi.yaml",
        "pyproject.toml",
        "requirements.lock",
        "policies/guardrails/__main__.py",
        "scripts/unknown.sh",
    ],
)
def test_program_changes_affect_every_stack(repo: Repo, path: str) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(path, "# changed\n")
    repo.commit(f"change {path}")
    assert repo.affected(base) == ALL


def test_placement_change_affects_sites_whose_resolved_profile_changes(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")

    def more_memory_on_gpu(doc: Any) -> None:
        profile(doc, "gpu")["set"]["serving"]["memory"] = "24Gi"

    repo.edit_yaml("policies/placement.yaml", more_memory_on_gpu)
    repo.commit("gpu sites serve with more memory")
    assert repo.affected(base) == ["site-bridge-north", "site-bridge-south", "site-harbor-ocp"]


def test_canary_model_bump_reaches_only_canary_sites(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")

    def bump(doc: Any) -> None:
        profile(doc, "canary")["set"]["model"]["version"] = "1.2.0"

    repo.edit_yaml("policies/placement.yaml", bump)
    repo.commit("canary 1.2.0")
    assert repo.affected(base) == ["site-bridge-south"]


def test_placement_edits_that_resolve_the_same_affect_nothing(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("policies/placement.yaml", "# reviewed 2025-11\n" + repo.read("policies/placement.yaml"))

    def reword(doc: Any) -> None:
        profile(doc, "production")["description"] = "Production: two replicas, hourly sync."

    repo.commit("comment")
    repo.edit_yaml("policies/placement.yaml", reword)
    repo.commit("reword")
    assert repo.affected(base) == []


def test_hub_versions_in_placement_affect_only_the_hub(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit_yaml("policies/placement.yaml", set_in("hub", "grafanaChart", "version", "8.10.2"))
    repo.commit("grafana")
    assert repo.affected(base) == ["hub"]


def test_breaking_the_placement_file_affects_every_stack(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(
        "policies/placement.yaml", repo.read("policies/placement.yaml").replace("kind: PlacementPolicy", "kind: Nope")
    )
    repo.commit("broken")
    assert repo.affected(base) == ALL


def test_a_site_that_stops_resolving_is_affected(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")

    def drop_staging(doc: Any) -> None:
        doc["labels"]["tier"].remove("staging")

    repo.edit_yaml("policies/placement.yaml", drop_staging)
    repo.commit("no more staging")
    assert repo.affected(base) == ["site-viaduct-cpu"]


def test_new_site_affects_it_and_its_shard_removed_site_only_its_shard(repo: Repo) -> None:
    """Onboarding never touches the hub stack: only the new site and the one access shard it hashes to."""
    base = repo.git("rev-parse", "HEAD")
    new = repo.read("stacks/Pulumi.site-viaduct-cpu.yaml").replace("viaduct-cpu", "viaduct-west")
    repo.write("stacks/Pulumi.site-viaduct-west.yaml", new)
    repo.commit("onboard viaduct-west")
    assert repo.affected(base) == sorted([access_stack_of("site-viaduct-west", 2), "site-viaduct-west"])
    base = repo.git("rev-parse", "HEAD")
    repo.git("rm", "-q", "stacks/Pulumi.site-bridge-south.yaml")
    repo.commit("retire bridge-south")
    assert repo.affected(base) == [access_stack_of("site-bridge-south", 2)]


def test_a_new_site_key_affects_the_site_and_its_shard(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit_yaml("stacks/Pulumi.site-harbor-ocp.yaml", set_in("config", "edgefm:sitePublicKey", "A" * 43 + "="))
    repo.commit("re-key harbor-ocp")
    assert repo.affected(base) == sorted([access_stack_of("site-harbor-ocp", 2), "site-harbor-ocp"])


def test_a_new_shard_count_affects_the_shards(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    write_access_shards(repo.path / "stacks", 3)
    repo.commit("three shards")
    assert repo.affected(base) == ["hub-access-000", "hub-access-001", "hub-access-002"]


def test_working_tree_changes_count_untracked_files_included(repo: Repo) -> None:
    repo.edit_yaml("stacks/Pulumi.hub.yaml", set_in("config", "edgefm:hub", "telemetry", "retentionDays", 60))
    repo.write(
        "stacks/Pulumi.site-new-site.yaml",
        repo.read("stacks/Pulumi.site-viaduct-cpu.yaml").replace("viaduct-cpu", "new-site"),
    )
    assert repo.affected("HEAD") == sorted(["hub", *SHARDS, "site-new-site"])


def test_only_changes_since_the_merge_base_count(repo: Repo) -> None:
    fork = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "feature")
    repo.edit_yaml("stacks/Pulumi.site-harbor-ocp.yaml", set_in("config", "edgefm:site", "labels", "wave", "1"))
    repo.commit("feature: harbor wave 1")
    repo.git("checkout", "-q", "main")
    repo.write("components/site_storage.py", "# main moved on\n")
    repo.commit("main: storage change")
    assert repo.git("merge-base", "main", "feature") == fork
    # As a pull request of `feature` into `main` shows it: main's own change is not part of it.
    assert repo.affected("main", "feature") == ["site-harbor-ocp"]


def test_no_or_unknown_base_previews_everything(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert repo.affected("0" * 40) == ALL
    assert repo.affected("deadbeef" * 5) == ALL
    assert "treating every stack as affected" in capsys.readouterr().err


def test_command_line_output(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit_yaml("stacks/Pulumi.site-bridge-north.yaml", set_in("config", "edgefm:site", "labels", "wave", "3"))
    repo.write("README.md", "x\n")
    repo.commit("two changes")
    runner = CliRunner()
    lines = runner.invoke(app, ["affected", "--base", base, "--repo", str(repo.path)])
    assert lines.exit_code == 0 and lines.stdout == "site-bridge-north\n"
    as_json = runner.invoke(app, ["affected", "--base", base, "--repo", str(repo.path), "--json", "--explain"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == ["site-bridge-north"]
    assert "site-bridge-north: stacks/Pulumi.site-bridge-north.yaml changed" in as_json.stderr
    empty = runner.invoke(app, ["affected", "--base", "HEAD", "--repo", str(repo.path), "--json"])
    assert json.loads(empty.stdout) == []
    bad = runner.invoke(app, ["affected", "--base", "HEAD", "--repo", str(repo.path / "nowhere")])
    assert bad.exit_code == 2 and "edgefm affected:" in bad.stderr


def test_batches_stay_within_the_matrix_limit_and_keep_every_stack() -> None:
    stacks = ["hub", *[f"hub-access-{i:03d}" for i in range(64)], *[f"site-s{i:04d}" for i in range(3501)]]
    groups = batches(stacks, 200)
    assert len(groups) == 200 and [s for g in groups for s in g] == stacks
    assert max(map(len, groups)) - min(map(len, groups)) <= 1
    assert batches(["hub"], 200) == [["hub"]] and batches([], 10) == []
    with pytest.raises(ValueError, match="at least 1"):
        batches(stacks, 0)


def test_command_line_batches(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("components/site_storage.py", "# changed\n")
    repo.commit("every stack")
    runner = CliRunner()
    done = runner.invoke(app, ["affected", "--base", base, "--repo", str(repo.path), "--batches", "3"])
    assert done.exit_code == 0, done.output
    groups = json.loads(done.stdout)
    assert [g["batch"] for g in groups] == ["1", "2", "3"]
    assert " ".join(g["stacks"] for g in groups).split() == ALL
    too_many = runner.invoke(app, ["affected", "--base", base, "--repo", str(repo.path), "--batches", "257"])
    assert too_many.exit_code == 2
