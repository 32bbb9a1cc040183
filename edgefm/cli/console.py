"""The one pair of rich consoles every `edgefm` command prints through: results on stdout, problems on stderr."""

from __future__ import annotations

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
