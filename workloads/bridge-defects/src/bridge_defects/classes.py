"""The six concrete-bridge defect classes of the reference use case, in the order the model's outputs use."""

from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "background",
    "crack",
    "spallation",
    "efflorescence",
    "exposed-bars",
    "corrosion-stain",
)


def parse_classes(text: str) -> tuple[str, ...]:
    """The trainer's ``--classes`` value: comma-separated, each one this generator/dataset knows, no repeats."""
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    if len(names) < 2:
        raise ValueError(f"--classes needs at least two comma-separated names, got {text!r}")
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise ValueError(f"--classes repeats {', '.join(dupes)}")
    return names
