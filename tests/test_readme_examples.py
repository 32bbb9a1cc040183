"""Runs every component example in the README under mocks and checks its documented resource count,
as cloud-foundation-fabric does with its tftest lines: the docs cannot drift from the code."""

from __future__ import annotations

import os
import re

import pytest

from tests.harness import ROOT, run_program

_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
_MARK = re.compile(r"^# example: resources=(\d+)$", re.M)


def _blocks() -> tuple[str, list[tuple[str, str, int]]]:
    text = (ROOT / "README.md").read_text()
    preamble, examples = "", []
    heading = ""
    pos = 0
    for match in _BLOCK.finditer(text):
        headings = re.findall(r"^### (\S+)", text[pos : match.start()], re.M)
        heading = headings[-1] if headings else heading
        pos = match.end()
        code = match.group(1)
        mark = _MARK.search(code)
        if mark is None:
            preamble = code
        else:
            examples.append((heading, code, int(mark.group(1))))
    return preamble, examples


PREAMBLE, EXAMPLES = _blocks()


def test_every_component_has_an_example() -> None:
    documented = {name for name, _, _ in EXAMPLES}
    components = set(re.findall(r'super\(\).__init__\("edgefm:\w+:(\w+)"', _component_sources()))
    assert components <= documented, components - documented


def _component_sources() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "components").rglob("*.py"))


@pytest.mark.parametrize(("name", "code", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_readme_example(name: str, code: str, expected: int) -> None:
    cwd = os.getcwd()
    os.chdir(ROOT)  # examples use repository-relative paths, as a reader would from the checkout
    try:
        run = run_program(lambda: exec(compile(PREAMBLE + code, f"README:{name}", "exec"), {}), "readme")
    finally:
        os.chdir(cwd)
    registered = [r for r in run.resources if r.type != "pulumi:pulumi:Stack"]
    assert len(registered) == expected, f"{name}: {len(registered)} resources, README says {expected}: " + ", ".join(
        sorted(f"{r.type}:{r.name}" for r in registered)
    )
