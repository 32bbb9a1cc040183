"""The `edgefm` command line: fleet config checks, placement explanations and model registry tools."""

from __future__ import annotations

import typer

from edgefm.registry.cli import models_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(models_app, name="models")


@app.callback()
def _root() -> None:
    """edgefm fleet tooling."""


def main() -> None:
    app()
