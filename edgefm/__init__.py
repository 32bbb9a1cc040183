"""edgefm: hub-and-spoke foundation-model fine-tuning and inference at the edge, as a Pulumi program."""

__version__ = "0.1.0"
