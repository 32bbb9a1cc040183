"""The one pair of rich consoles every `edgefm` command prints through: results on stdout, problems on stderr."""

from __future__ import annotations

import sys

from rich.console import Console

# Off a terminal (a log, CI) rich would assume 80 columns and truncate the fleet's summary tables.
LOG_WIDTH = 130

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else LOG_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)
