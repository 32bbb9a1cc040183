"""Config problems: one line each, naming the stack, the key path and what is wrong."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True, order=True)
class Problem:
    stack: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.stack}: {self.path}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found, so a user fixes them all in one pass."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


def _loc_to_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("[") or part in ("", "__root__"):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def from_validation_error(stack: str, prefix: str, error: ValidationError) -> list[Problem]:
    """Turns pydantic's error list into problems whose paths use the YAML key names."""
    problems = []
    for err in error.errors(include_url=False):
        # Drop the union-branch and function-validator tags pydantic inserts into `loc`.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        problems.append(Problem(stack, _loc_to_path(prefix, loc), message))
    return problems
