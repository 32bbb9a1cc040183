"""edgefm Pulumi program: one stack per site (`site-<name>`) plus the `hub` stack."""

from pathlib import Path

import pulumi

from edgefm.program import run

# The directory the engine runs the program in (not resolved through links): a workspace may overlay files of
# the checkout, such as an edited placement policy previewed before it is committed.
run(pulumi.get_stack(), Path(__file__).absolute().parent)
