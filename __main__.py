"""edgefm Pulumi program: one stack per site (`site-<name>`) plus the `hub` stack."""

from pathlib import Path

import pulumi

from edgefm.program import run

run(pulumi.get_stack(), Path(__file__).resolve().parent)
