"""Shared test helpers: model directories of random bytes, and the CLI as edgefm/cli.py mounts it."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from typer.testing import CliRunner, Result

from edgefm.cli.models import models_app

MiB = 1024 * 1024

app = typer.Typer()
app.add_typer(models_app, name="models")


def run(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(app, ["models", *args], env=env)


def write_model(root: Path, files: dict[str, int]) -> Path:
    """A model directory with random files of the given sizes (bytes)."""
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            left = size
            while left > 0:
                chunk = os.urandom(min(left, 8 * MiB))
                f.write(chunk)
                left -= len(chunk)
    return root
